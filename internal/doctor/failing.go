package doctor

import (
	"cmp"
	"slices"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"

	"regcred.dev/regcred/internal/kubeletmsg"
)

// failing is one image the kubelet failed to pull for a Pod.
type failing struct {
	kind, name, image, waiting, message string
	// at is when the kubelet last reported the failure (its Event); zero
	// when only the waiting state tells.
	at time.Time
}

// notPullReasons are waiting reasons that are not about a pull.
var notPullReasons = []string{"", "ContainerCreating", "PodInitializing", "CrashLoopBackOff", "CreateContainerConfigError",
	"CreateContainerError", "RunContainerError", "PreStartHookError", "PostStartHookError", "ContainerStatusUnknown"}

// failingImages lists the images a Pod waits on because of a failed pull,
// each once, with the kubelet's latest word on it. When a pull Secret of the
// Pod is malformed (malformed), the kubelet's waiting reason is the parse
// error itself ("illegal base64 data at input byte 0"): any reason that is
// not known to be about something else counts.
func failingImages(pod *corev1.Pod, events []corev1.Event, malformed bool) []failing {
	kinds, specImage := containerImages(pod)
	volumeOf := imageVolumes(pod)
	latest := latestPullMessages(events)
	var out []failing
	seen := map[string]bool{}
	statuses := slices.Concat(pod.Status.InitContainerStatuses, pod.Status.ContainerStatuses, pod.Status.EphemeralContainerStatuses)
	for _, st := range statuses {
		w := st.State.Waiting
		if w == nil || !(slices.Contains(kubeletmsg.PullWaitingReasons, w.Reason) || (malformed && !slices.Contains(notPullReasons, w.Reason))) {
			continue
		}
		image := kubeletmsg.ImageOfMessage(w.Message)
		if image == "" {
			image = specImage[st.Name]
		}
		f := failing{kind: kinds[st.Name], name: st.Name, image: image, waiting: w.Reason, message: cmp.Or(w.Message, w.Reason)}
		if f.kind == "" {
			f.kind = "container"
		}
		if image != specImage[st.Name] {
			if vol, ok := volumeOf[image]; ok {
				f.kind, f.name = "imageVolume", vol
			}
		}
		if ev, ok := latest[image]; ok {
			f.message, f.at = ev.message, ev.at
		}
		if key := f.kind + "/" + f.name; !seen[key] {
			seen[key] = true
			out = append(out, f)
		}
	}
	if len(out) == 0 {
		out = eventOnlyFailures(pod, latest, kinds, specImage, volumeOf)
	}
	if len(out) == 0 {
		out = missingSecretFailures(pod, events, kinds, specImage)
	}
	return out
}

// eventOnlyFailures lists the images of a Pending Pod that the kubelet said
// it failed to pull while their containers' statuses do not say so yet: for
// a moment after the first failed pull, and while an image volume's pull
// fails, the status reads ContainerCreating and the Event is the only
// word. A container that runs or ran is past its pull.
func eventOnlyFailures(pod *corev1.Pod, latest map[string]pullEvent, kinds, specImage, volumeOf map[string]string) []failing {
	if pod.Status.Phase != corev1.PodPending || len(latest) == 0 {
		return nil
	}
	// A container counts only while it waits to be created: one that
	// runs, ran, or waits for another reason (a missing ConfigMap) is
	// past its pull.
	creating := map[string]bool{}
	for _, st := range slices.Concat(pod.Status.InitContainerStatuses, pod.Status.ContainerStatuses, pod.Status.EphemeralContainerStatuses) {
		creating[st.Name] = st.State.Waiting != nil && (st.State.Waiting.Reason == "ContainerCreating" || st.State.Waiting.Reason == "PodInitializing")
	}
	waiting := func(name string) bool {
		c, ok := creating[name]
		return !ok || c
	}
	var out []failing
	for name, img := range specImage {
		if ev, ok := latest[img]; ok && waiting(name) {
			out = append(out, failing{kind: kinds[name], name: name, image: img, message: ev.message, at: ev.at})
		}
	}
	// An image volume is pulled before any container is created.
	for img, vol := range volumeOf {
		if ev, ok := latest[img]; ok && slices.ContainsFunc(pod.Spec.Containers, func(c corev1.Container) bool { return waiting(c.Name) }) {
			out = append(out, failing{kind: "imageVolume", name: vol, image: img, message: ev.message, at: ev.at})
		}
	}
	slices.SortFunc(out, func(a, b failing) int { return cmp.Or(cmp.Compare(a.kind, b.kind), cmp.Compare(a.name, b.name)) })
	return out
}

// containerImages maps each container of the Pod's spec to its kind and
// to its image.
func containerImages(pod *corev1.Pod) (kinds, images map[string]string) {
	kinds, images = map[string]string{}, map[string]string{}
	for _, c := range pod.Spec.InitContainers {
		kinds[c.Name], images[c.Name] = "initContainer", c.Image
	}
	for _, c := range pod.Spec.Containers {
		kinds[c.Name], images[c.Name] = "container", c.Image
	}
	for _, c := range pod.Spec.EphemeralContainers {
		kinds[c.Name], images[c.Name] = "ephemeralContainer", c.Image
	}
	return kinds, images
}

// imageVolumes maps the reference of each image volume to its name.
func imageVolumes(pod *corev1.Pod) map[string]string {
	out := map[string]string{}
	for _, v := range pod.Spec.Volumes {
		if v.Image != nil {
			out[v.Image.Reference] = v.Name
		}
	}
	return out
}

// missingSecretFailures lists the containers of a Pending Pod that the
// kubelet could not get a pull Secret for. A Pod whose pull Secret is
// missing may still be creating its sandbox; the Event is then the only
// word.
func missingSecretFailures(pod *corev1.Pod, events []corev1.Event, kinds, specImage map[string]string) []failing {
	var out []failing
	for _, ev := range events {
		if ev.Reason == kubeletmsg.EventMissingSecret && pod.Status.Phase == corev1.PodPending {
			for name, img := range specImage {
				if kinds[name] == "container" {
					out = append(out, failing{kind: "container", name: name, image: img, message: ev.Message, at: eventTime(ev)})
				}
			}
			slices.SortFunc(out, func(a, b failing) int { return cmp.Compare(a.name, b.name) })
			break
		}
	}
	return out
}

// pullEvent is what the kubelet last said about an image, and when.
type pullEvent struct {
	message string
	at      time.Time
}

// latestPullMessages maps an image to the message of the kubelet's latest
// "Failed to pull image" (or InspectFailed, ErrImageNeverPull) Event on it:
// the registry's own answer, which a back-off status only repeats.
func latestPullMessages(events []corev1.Event) map[string]pullEvent {
	sorted := slices.Clone(events)
	sort.SliceStable(sorted, func(i, j int) bool { return eventTime(sorted[i]).Before(eventTime(sorted[j])) })
	out := map[string]pullEvent{}
	for _, ev := range sorted {
		if ev.Reason == kubeletmsg.EventMissingSecret || !kubeletmsg.IsPullFailureEvent(ev.Reason, ev.Message) {
			continue
		}
		if img := kubeletmsg.ImageOfMessage(ev.Message); img != "" {
			out[img] = pullEvent{message: ev.Message, at: eventTime(ev)}
		}
	}
	return out
}

func eventTime(ev corev1.Event) time.Time {
	switch {
	case !ev.LastTimestamp.IsZero():
		return ev.LastTimestamp.Time
	case !ev.EventTime.IsZero():
		return ev.EventTime.Time
	default:
		return ev.CreationTimestamp.Time
	}
}
