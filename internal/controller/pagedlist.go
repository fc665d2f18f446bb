package controller

import (
	"regcred.dev/regcred/api/v1alpha1"

	"context"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	toolscache "k8s.io/client-go/tools/cache"
)

// An informer's first fill is a watch stream when the API server can serve
// one (the informer's transform then runs on each object as it arrives),
// and otherwise one LIST (etcd before 3.4.31/3.5.13 lacks the progress
// notifications the stream needs; the reflector falls back silently). The
// reflector asks for that LIST at resourceVersion "0", which the watch
// cache answers whole, ignoring the page size: 100 MiB of a tenant's
// annotations arrive as one response, are decoded all at once and only
// then transformed. pagedListerWatcher lists the kinds tenants write in
// small pages instead and trims each page before it asks for the next, so
// only a page of full objects is ever in memory.

// listPageSize bounds the full objects in memory during a list: an object
// is at most about 1.5 MiB (etcd's limit), a page at most ~15 MiB.
const listPageSize = 10

// pagedListerWatcher lists through lw in pages of listPageSize, applying
// trim to each page's items, and returns one whole list (no continue
// token), so the reflector's own pager sees an unpaginated answer.
// Watches, including the streamed initial list, pass through unchanged.
type pagedListerWatcher struct {
	lw   toolscache.ListerWatcherWithContext
	trim toolscache.TransformFunc
}

func (p *pagedListerWatcher) List(o metav1.ListOptions) (runtime.Object, error) {
	return p.ListWithContext(context.Background(), o)
}

func (p *pagedListerWatcher) Watch(o metav1.ListOptions) (watch.Interface, error) {
	return p.WatchWithContext(context.Background(), o)
}

func (p *pagedListerWatcher) WatchWithContext(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
	return p.lw.WatchWithContext(ctx, o)
}

func (p *pagedListerWatcher) ListWithContext(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
	if o.Continue != "" {
		return p.lw.ListWithContext(ctx, o) // a caller's own paging
	}
	if o.ResourceVersion == "0" {
		// "Any version" is answered whole from the watch cache; the
		// latest one is paged.
		o.ResourceVersion, o.ResourceVersionMatch = "", ""
	}
	if o.ResourceVersion != "" && o.ResourceVersionMatch == "" {
		// What an unpaged list at a version means; paged, it would be
		// that exact version.
		o.ResourceVersionMatch = metav1.ResourceVersionMatchNotOlderThan
	}
	o.Limit = listPageSize
	var first runtime.Object
	var items []runtime.Object
	for {
		page, err := p.lw.ListWithContext(ctx, o)
		if err != nil {
			return nil, err
		}
		pageItems, err := p.trimmedItems(page)
		if err != nil {
			return nil, err
		}
		items = append(items, pageItems...)
		m, err := meta.ListAccessor(page)
		if err != nil {
			return nil, err
		}
		if first == nil {
			first = page
		}
		if m.GetContinue() == "" {
			break
		}
		// Later pages belong to the first page's snapshot.
		o.Continue, o.ResourceVersion, o.ResourceVersionMatch = m.GetContinue(), "", ""
	}
	return wholeList(first, items)
}

// trimmedItems trims page's items in place; the pointers keep only the
// trimmed objects alive, not the page's raw response.
func (p *pagedListerWatcher) trimmedItems(page runtime.Object) ([]runtime.Object, error) {
	items, err := meta.ExtractList(page)
	if err != nil {
		return nil, err
	}
	if p.trim == nil {
		return items, nil
	}
	for i, it := range items {
		out, err := p.trim(it)
		if err != nil {
			return nil, err
		}
		if obj, ok := out.(runtime.Object); ok {
			items[i] = obj
		}
	}
	return items, nil
}

// wholeList makes first, the first page, the list of all items: the
// first page's resourceVersion, no continue token.
func wholeList(first runtime.Object, items []runtime.Object) (runtime.Object, error) {
	if err := meta.SetList(first, items); err != nil {
		return nil, err
	}
	m, err := meta.ListAccessor(first)
	if err != nil {
		return nil, err
	}
	m.SetContinue("")
	m.SetRemainingItemCount(nil)
	return first, nil
}

// tenantTrim is the transform of a kind tenants write, nil for the others.
func tenantTrim(obj runtime.Object) toolscache.TransformFunc {
	switch obj.(type) {
	case *corev1.Secret:
		return trimmed(trimSecret)
	case *corev1.ServiceAccount:
		return trimmed(trimServiceAccount)
	case *corev1.Namespace:
		return trimmed(trimNamespace)
	case *v1alpha1.RegistryCredential:
		return trimmed(trimRegistryCredential)
	}
	return nil
}

// pagedInformers is a cache.Options.NewInformer: informers of the kinds
// trimFor has a transform for list in trimmed pages; the others are
// client-go's as they are.
func pagedInformers(trimFor func(runtime.Object) toolscache.TransformFunc) func(toolscache.ListerWatcher, runtime.Object, time.Duration, toolscache.Indexers) toolscache.SharedIndexInformer {
	return func(lw toolscache.ListerWatcher, obj runtime.Object, resync time.Duration, idx toolscache.Indexers) toolscache.SharedIndexInformer {
		if trim := trimFor(obj); trim != nil {
			lw = &pagedListerWatcher{lw: toolscache.ToListerWatcherWithContext(lw), trim: trim}
		}
		return toolscache.NewSharedIndexInformer(lw, obj, resync, idx)
	}
}
