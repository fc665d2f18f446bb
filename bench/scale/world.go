package main

import (
	"context"
	"fmt"
	"sort"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"regcred.dev/regcred/internal/credential"
	"regcred.dev/regcred/internal/dockercfg"
)

// world is what the cluster should look like: the selected namespaces
// that exist, each credential's current password, and the pull secrets
// others put on ServiceAccounts, which regcred must keep.
type world struct {
	c        client.Client
	cs       kubernetes.Interface
	creds    int
	delivery string

	mu       sync.Mutex
	present  map[string]bool
	rotation []int
	// foreign are the pull secrets others keep on a namespace's default
	// ServiceAccount.
	foreign map[string][]string
}

func newWorld(c client.Client, cs kubernetes.Interface, creds int, delivery string) *world {
	return &world{c: c, cs: cs, creds: creds, delivery: delivery, present: map[string]bool{},
		rotation: make([]int, creds), foreign: map[string][]string{}}
}

func (w *world) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.present)
}

func password(i, rotation int) string { return fmt.Sprintf("pw-%d-%d", i, rotation) }

// writeSource writes credential i's source Secret with its current
// password.
func (w *world) writeSource(ctx context.Context, i int) error {
	w.mu.Lock()
	pw := password(i, w.rotation[i])
	w.mu.Unlock()
	data, err := (&dockercfg.Config{Auths: map[string]dockercfg.Entry{host(i): {Username: fmt.Sprintf("robot-%d", i), Password: pw}}}).MarshalDockerConfigJSON()
	if err != nil {
		return err
	}
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: regcredNS, Name: sourceName(i)},
		Type: corev1.SecretTypeDockerConfigJson, Data: map[string][]byte{corev1.DockerConfigJsonKey: data}}
	err = w.c.Create(ctx, s)
	if apierrors.IsAlreadyExists(err) {
		var cur corev1.Secret
		if err := w.c.Get(ctx, client.ObjectKeyFromObject(s), &cur); err != nil {
			return err
		}
		cur.Data = s.Data
		return w.c.Update(ctx, &cur)
	}
	return err
}

// check compares the cluster with the world and returns what differs
// (at most 20 lines, and the count of the rest).
func (w *world) check(ctx context.Context) ([]string, error) {
	secrets, err := listAll(ctx, w.c, &corev1.SecretList{}, client.MatchingLabels{credential.LabelManaged: "true"})
	if err != nil {
		return nil, err
	}
	sas, err := listAll(ctx, w.c, &corev1.ServiceAccountList{})
	if err != nil {
		return nil, err
	}
	got := map[string]*corev1.Secret{}
	for i := range secrets.(*corev1.SecretList).Items {
		s := &secrets.(*corev1.SecretList).Items[i]
		got[s.Namespace+"/"+s.Name] = s
	}
	defaults := map[string]*corev1.ServiceAccount{}
	for i := range sas.(*corev1.ServiceAccountList).Items {
		sa := &sas.(*corev1.ServiceAccountList).Items[i]
		if sa.Name == "default" {
			defaults[sa.Namespace] = sa
		}
	}

	w.mu.Lock()
	defer w.mu.Unlock()
	var problems []string
	more := 0
	add := func(format string, a ...any) {
		if len(problems) < 20 {
			problems = append(problems, fmt.Sprintf(format, a...))
		} else {
			more++
		}
	}
	secrets2 := w.delivery != "Node"
	for ns := range w.present {
		sa := defaults[ns]
		if sa == nil {
			add("%s: no default ServiceAccount", ns)
			continue
		}
		names := map[string]bool{}
		for _, r := range sa.ImagePullSecrets {
			names[r.Name] = true
		}
		for _, f := range w.foreign[ns] {
			if !names[f] {
				add("%s: another's pull secret %s was dropped", ns, f)
			}
		}
		for i := range w.creds {
			key := ns + "/" + secretName(i)
			s := got[key]
			delete(got, key)
			switch {
			case !secrets2 && (s != nil || names[secretName(i)]):
				add("%s: delivery Node, yet Secret or ServiceAccount entry %s", ns, secretName(i))
			case !secrets2:
			case s == nil:
				add("%s: Secret missing", key)
			case !names[secretName(i)]:
				add("%s: ServiceAccount lacks %s", ns, secretName(i))
			default:
				cfg, err := dockercfg.ParseDockerConfigJSON(s.Data[corev1.DockerConfigJsonKey])
				if err != nil {
					add("%s: %v", key, err)
					break
				}
				if e, ok := cfg.Auths[host(i)]; !ok || e.Password != password(i, w.rotation[i]) {
					add("%s: stale (rotation %d expected)", key, w.rotation[i])
				}
			}
		}
	}
	for key, s := range got {
		if s.DeletionTimestamp == nil && w.present[s.Namespace] {
			add("%s: unexpected managed Secret", key)
		}
	}
	sort.Strings(problems)
	if more > 0 {
		problems = append(problems, fmt.Sprintf("and %d more", more))
	}
	return problems, nil
}

// listAll lists in pages of 500.
func listAll(ctx context.Context, c client.Client, list client.ObjectList, opts ...client.ListOption) (client.ObjectList, error) {
	var all client.ObjectList
	cont := ""
	for {
		page := list.DeepCopyObject().(client.ObjectList)
		if err := c.List(ctx, page, append(opts, client.Limit(500), client.Continue(cont))...); err != nil {
			return nil, err
		}
		if all == nil {
			all = page
		} else {
			switch a := all.(type) {
			case *corev1.SecretList:
				a.Items = append(a.Items, page.(*corev1.SecretList).Items...)
			case *corev1.ServiceAccountList:
				a.Items = append(a.Items, page.(*corev1.ServiceAccountList).Items...)
			}
		}
		cont = page.GetContinue()
		if cont == "" {
			return all, nil
		}
	}
}
