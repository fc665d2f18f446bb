package doctor

import (
	"context"
	"fmt"
	"slices"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"regcred.dev/regcred/api/v1alpha1"
	"regcred.dev/regcred/internal/credential"
	"regcred.dev/regcred/internal/kubeletmsg"
	"regcred.dev/regcred/internal/nodecreds"
)

// pageSize bounds each list: a big cluster is read in pages.
const pageSize = 500

// Collect reads what Diagnose needs about the target's Pods: all Pods in
// scope (one paginated list), and only for the Pods that fail to pull their
// Warning Events (one list per namespace), namespace, ServiceAccount, pull
// Secrets and the owner of their ReplicaSet; then regcred's credentials,
// webhook registration and, when a credential delivers to nodes, the
// broker's ConfigMap once.
func Collect(ctx context.Context, c client.Reader, target Target, regcredNamespace string) (*Snapshot, error) {
	s := &Snapshot{Now: time.Now(), RegcredNamespace: regcredNamespace, SecretsReadable: true,
		Events: map[types.UID][]corev1.Event{}, Namespaces: map[string]*corev1.Namespace{},
		ServiceAccounts: map[string]*corev1.ServiceAccount{}, Secrets: map[string]*corev1.Secret{}, Workloads: map[types.UID]string{}}
	pods, err := podsOf(ctx, c, target)
	if err != nil {
		return nil, err
	}
	s.Pods = pods

	if err := s.readEvents(ctx, c); err != nil {
		return nil, err
	}

	// Only Pods that fail need their surroundings read.
	var failingPods []*corev1.Pod
	for _, p := range pods {
		// Whether a pull Secret is malformed is known only once they are
		// read: until then any unexplained waiting reason may be one.
		if len(failingImages(p, s.Events[p.UID], true)) > 0 {
			failingPods = append(failingPods, p)
		}
	}
	if len(failingPods) == 0 {
		s.RegcredInstalled = true
		return s, nil
	}

	if err := s.readCredentials(ctx, c); err != nil {
		return nil, err
	}
	for _, p := range failingPods {
		if err := s.readAround(ctx, c, p); err != nil {
			return nil, err
		}
	}
	if err := s.readWebhook(ctx, c); err != nil {
		return nil, err
	}
	if err := s.readNodeCredentials(ctx, c); err != nil {
		return nil, err
	}
	return s, nil
}

// readEvents reads the pull-failure Events of the snapshot's Pods, in the
// namespaces of candidate Pods only: those waiting on a pull, or still
// Pending (a missing pull Secret shows only as an Event).
func (s *Snapshot) readEvents(ctx context.Context, c client.Reader) error {
	var namespaces []string
	for _, p := range s.Pods {
		if candidate(p) && !slices.Contains(namespaces, p.Namespace) {
			namespaces = append(namespaces, p.Namespace)
		}
	}
	byUID := map[types.UID]bool{}
	for _, p := range s.Pods {
		byUID[p.UID] = true
	}
	for _, ns := range namespaces {
		sel := fields.SelectorFromSet(fields.Set{"involvedObject.kind": "Pod", "type": corev1.EventTypeWarning})
		err := listPages(ctx, c, &corev1.EventList{}, func(l client.ObjectList) {
			for _, ev := range l.(*corev1.EventList).Items {
				if byUID[ev.InvolvedObject.UID] && kubeletmsg.IsPullFailureEvent(ev.Reason, ev.Message) {
					s.Events[ev.InvolvedObject.UID] = append(s.Events[ev.InvolvedObject.UID], ev)
				}
			}
		}, client.InNamespace(ns), client.MatchingFieldsSelector{Selector: sel})
		if err != nil {
			return fmt.Errorf("list events in %s: %w", ns, err)
		}
	}
	return nil
}

// candidate reports whether a Pod may be failing a pull.
func candidate(p *corev1.Pod) bool {
	if p.Status.Phase == corev1.PodPending {
		return true
	}
	for _, st := range slices.Concat(p.Status.InitContainerStatuses, p.Status.ContainerStatuses, p.Status.EphemeralContainerStatuses) {
		if w := st.State.Waiting; w != nil && slices.Contains(kubeletmsg.PullWaitingReasons, w.Reason) {
			return true
		}
	}
	return false
}

func podsOf(ctx context.Context, c client.Reader, t Target) ([]*corev1.Pod, error) {
	var out []*corev1.Pod
	collect := func(l client.ObjectList) {
		for i := range l.(*corev1.PodList).Items {
			out = append(out, &l.(*corev1.PodList).Items[i])
		}
	}
	switch t.Kind {
	case "":
		var opts []client.ListOption
		if t.Namespace != "" {
			opts = append(opts, client.InNamespace(t.Namespace))
		}
		return out, listPages(ctx, c, &corev1.PodList{}, collect, opts...)
	case "pod":
		var p corev1.Pod
		if err := c.Get(ctx, client.ObjectKey{Namespace: t.Namespace, Name: t.Name}, &p); err != nil {
			return nil, notFound(err, t)
		}
		return []*corev1.Pod{&p}, nil
	}
	obj, selector, err := workload(t.Kind)
	if err != nil {
		return nil, err
	}
	if err := c.Get(ctx, client.ObjectKey{Namespace: t.Namespace, Name: t.Name}, obj); err != nil {
		return nil, notFound(err, t)
	}
	sel, err := metav1.LabelSelectorAsSelector(selector(obj))
	if err != nil {
		return nil, err
	}
	if sel.Empty() {
		sel = labels.Nothing()
	}
	return out, listPages(ctx, c, &corev1.PodList{}, collect, client.InNamespace(t.Namespace), client.MatchingLabelsSelector{Selector: sel})
}

// workload is the object of a workload kind and how to get its Pods'
// selector.
func workload(kind string) (client.Object, func(client.Object) *metav1.LabelSelector, error) {
	switch kind {
	case "deployment":
		return &appsv1.Deployment{}, func(o client.Object) *metav1.LabelSelector { return o.(*appsv1.Deployment).Spec.Selector }, nil
	case "statefulset":
		return &appsv1.StatefulSet{}, func(o client.Object) *metav1.LabelSelector { return o.(*appsv1.StatefulSet).Spec.Selector }, nil
	case "daemonset":
		return &appsv1.DaemonSet{}, func(o client.Object) *metav1.LabelSelector { return o.(*appsv1.DaemonSet).Spec.Selector }, nil
	case "replicaset":
		return &appsv1.ReplicaSet{}, func(o client.Object) *metav1.LabelSelector { return o.(*appsv1.ReplicaSet).Spec.Selector }, nil
	case "job":
		return &batchv1.Job{}, func(o client.Object) *metav1.LabelSelector { return o.(*batchv1.Job).Spec.Selector }, nil
	}
	return nil, nil, fmt.Errorf("unknown kind %q: use pod, deployment, statefulset, daemonset, replicaset or job", kind)
}

func notFound(err error, t Target) error {
	if apierrors.IsNotFound(err) {
		return &ErrNotFound{What: fmt.Sprintf("%s/%s in namespace %s", t.Kind, t.Name, t.Namespace)}
	}
	return err
}

// listPages lists in pages of pageSize, handing each page to fn.
func listPages(ctx context.Context, c client.Reader, list client.ObjectList, fn func(client.ObjectList), opts ...client.ListOption) error {
	cont := ""
	for {
		o := append(slices.Clone(opts), client.Limit(pageSize))
		if cont != "" {
			o = append(o, client.Continue(cont))
		}
		if err := c.List(ctx, list, o...); err != nil {
			return err
		}
		fn(list)
		cont = list.GetContinue()
		if cont == "" {
			return nil
		}
	}
}

func (s *Snapshot) readCredentials(ctx context.Context, c client.Reader) error {
	var clusterCreds v1alpha1.ClusterRegistryCredentialList
	err := c.List(ctx, &clusterCreds)
	switch {
	case meta.IsNoMatchError(err) || apierrors.IsNotFound(err):
		s.Notes = append(s.Notes, "regcred's CRDs are not installed: only the Pods and their pull Secrets were checked")
		return nil
	case apierrors.IsForbidden(err):
		s.Notes = append(s.Notes, "you may not list ClusterRegistryCredentials: credentials were not checked")
		return nil
	case err != nil:
		return fmt.Errorf("list ClusterRegistryCredentials: %w", err)
	}
	s.RegcredInstalled = true
	for i := range clusterCreds.Items {
		s.Credentials = append(s.Credentials, credential.FromCluster(&clusterCreds.Items[i]))
	}
	var nsCreds v1alpha1.RegistryCredentialList
	if err := c.List(ctx, &nsCreds); err != nil {
		if apierrors.IsForbidden(err) {
			s.Notes = append(s.Notes, "you may not list RegistryCredentials in every namespace: they were not checked")
			return nil
		}
		return fmt.Errorf("list RegistryCredentials: %w", err)
	}
	for i := range nsCreds.Items {
		s.Credentials = append(s.Credentials, credential.FromNamespaced(&nsCreds.Items[i]))
	}
	return nil
}

// readAround reads a failing Pod's namespace, ServiceAccount, the Secrets
// it lists or should list, and the workload that made it.
func (s *Snapshot) readAround(ctx context.Context, c client.Reader, p *corev1.Pod) error {
	if _, ok := s.Namespaces[p.Namespace]; !ok {
		var ns corev1.Namespace
		if err := c.Get(ctx, client.ObjectKey{Name: p.Namespace}, &ns); err != nil {
			if !apierrors.IsForbidden(err) {
				return fmt.Errorf("get namespace %s: %w", p.Namespace, err)
			}
			s.note("you may not read namespaces: namespace selection was not checked")
		} else {
			s.Namespaces[p.Namespace] = &ns
		}
	}
	saName := p.Spec.ServiceAccountName
	if saName == "" {
		saName = "default"
	}
	if err := getInto(ctx, c, p.Namespace, saName, &corev1.ServiceAccount{}, s.ServiceAccounts); err != nil {
		return err
	}
	names := map[string]bool{}
	for _, r := range p.Spec.ImagePullSecrets {
		names[r.Name] = true
	}
	for _, cr := range s.Credentials {
		// A credential delivered to nodes only has no Secret to read.
		if cr.DeliversSecrets() && (cr.Kind == credential.KindCluster || cr.Namespace == p.Namespace) {
			names[cr.SecretName()] = true
		}
	}
	for name := range names {
		if !s.SecretsReadable {
			break
		}
		err := getInto(ctx, c, p.Namespace, name, &corev1.Secret{}, s.Secrets)
		if apierrors.IsForbidden(err) {
			s.SecretsReadable = false
			s.note("you may not read Secrets: pull Secrets were not checked")
			continue
		}
		if err != nil {
			return err
		}
	}
	if ref := controllerOf(p); ref != nil && ref.Kind == "ReplicaSet" {
		if _, ok := s.Workloads[ref.UID]; !ok {
			var rs appsv1.ReplicaSet
			s.Workloads[ref.UID] = "replicaset/" + ref.Name
			if err := c.Get(ctx, client.ObjectKey{Namespace: p.Namespace, Name: ref.Name}, &rs); err == nil {
				for _, o := range rs.OwnerReferences {
					if o.Controller != nil && *o.Controller && o.Kind == "Deployment" {
						s.Workloads[ref.UID] = "deployment/" + o.Name
					}
				}
			}
		}
	}
	return nil
}

// getInto reads one object into m under namespace/name; not found leaves
// m without it.
func getInto[T client.Object](ctx context.Context, c client.Reader, ns, name string, obj T, m map[string]T) error {
	key := ns + "/" + name
	if _, ok := m[key]; ok {
		return nil
	}
	err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, obj)
	switch {
	case apierrors.IsNotFound(err):
		return nil
	case apierrors.IsForbidden(err):
		return err
	case err != nil:
		return fmt.Errorf("get %s: %w", key, err)
	}
	m[key] = obj
	return nil
}

func (s *Snapshot) readWebhook(ctx context.Context, c client.Reader) error {
	var list admissionregistrationv1.MutatingWebhookConfigurationList
	if err := c.List(ctx, &list); err != nil {
		if apierrors.IsForbidden(err) {
			s.note("you may not list MutatingWebhookConfigurations: the webhook was not checked")
			s.Webhook = &Webhook{}
			return nil
		}
		return fmt.Errorf("list MutatingWebhookConfigurations: %w", err)
	}
	for _, cfg := range list.Items {
		for _, w := range cfg.Webhooks {
			if w.Name == WebhookName {
				s.Webhook = &Webhook{Configuration: cfg.Name}
				if w.FailurePolicy != nil {
					s.Webhook.FailurePolicy = string(*w.FailurePolicy)
				}
			}
		}
	}
	return nil
}

// readNodeCredentials tells whether the manager serves the kubelet
// credential broker: it publishes the ConfigMap nodecreds.ConfigMapName in
// its namespace when it does. Read only when a credential delivers to
// nodes; a caller who may not read it learns that it was not checked.
func (s *Snapshot) readNodeCredentials(ctx context.Context, c client.Reader) error {
	if !slices.ContainsFunc(s.Credentials, (*credential.Credential).DeliversToNodes) {
		return nil
	}
	var cm corev1.ConfigMap
	err := c.Get(ctx, client.ObjectKey{Namespace: s.RegcredNamespace, Name: nodecreds.ConfigMapName}, &cm)
	switch {
	case err == nil:
		s.NodeCredentials = BrokerPublished
	case apierrors.IsNotFound(err):
		s.NodeCredentials = BrokerAbsent
	case apierrors.IsForbidden(err):
		s.note(fmt.Sprintf("you may not read ConfigMap %s/%s: whether the manager serves node credentials was not checked", s.RegcredNamespace, nodecreds.ConfigMapName))
	default:
		return fmt.Errorf("get ConfigMap %s/%s: %w", s.RegcredNamespace, nodecreds.ConfigMapName, err)
	}
	return nil
}

func (s *Snapshot) note(n string) {
	if !slices.Contains(s.Notes, n) {
		s.Notes = append(s.Notes, n)
	}
}
