package webhook

import (
	"context"
	"fmt"

	"regcred.dev/regcred/internal/credential"
	"regcred.dev/regcred/internal/logkeys"
)

// view is what one admission decides with: the compiled catalogue, and
// the resolved images of its current mirror rules.
type view struct {
	cat    *credential.Catalogue
	images *imageCache
}

// snapshot waits until the catalogue holds what existed at the start,
// then returns the view to decide with. Admitting a Pod costs no parsing
// of credentials and no API call.
func (h *Handler) snapshot(ctx context.Context) (*view, error) {
	cat := h.Catalogue
	select {
	case <-cat.Synced():
	case <-ctx.Done():
		return nil, fmt.Errorf("the credential catalogue is not loaded yet: %w", ctx.Err())
	}
	if v := cat.Version(); h.logged.Swap(v) != v {
		for _, p := range cat.Problems() {
			h.Log.Info("skipping what the webhook cannot use", logkeys.Problem, p)
		}
	}
	return &view{cat: cat, images: h.imagesFor(cat.MirrorGeneration())}, nil
}

// imagesFor is the image cache of one generation of the mirrors: a new
// generation starts an empty one. Two admissions racing at the change
// may each start one; the loser's is dropped, which costs only parsing.
func (h *Handler) imagesFor(gen uint64) *imageCache {
	if c := h.images.Load(); c != nil && c.generation == gen {
		return c
	}
	c := &imageCache{generation: gen}
	h.images.Store(c)
	return c
}

// injectable are the credentials acting in the namespace whose Secrets
// the webhook adds to Pods.
func injectable(acting []*credential.Entry) []*credential.Entry {
	out := make([]*credential.Entry, 0, len(acting))
	for _, e := range acting {
		if e.InjectionEnabled() {
			out = append(out, e)
		}
	}
	return out
}
