// Package kubeletmsg is the kubelet's vocabulary of pull failures: the
// waiting reasons of a container and the reasons of its Events, and what
// their messages say (the cause, the image, the missing Secrets). It reads
// strings only and holds no Kubernetes client, so the manager's Event
// watch and the doctor read the kubelet the same way.
package kubeletmsg

import (
	"regexp"
	"strings"
)

// Cause is the class of a pull failure: what went wrong, in terms a person
// can act on. The set is closed; metrics use it as a label.
type Cause string

// The causes.
const (
	// Unauthorized: the registry refused the login, or wanted one and got
	// none (401, insufficient_scope).
	Unauthorized Cause = "Unauthorized"
	// Denied: the registry accepted the login but refused this repository
	// (403, "denied").
	Denied Cause = "Denied"
	// NotFound: no such repository, tag or digest.
	NotFound Cause = "NotFound"
	// RateLimited: the registry answered 429 (Docker Hub's pull limit).
	RateLimited Cause = "RateLimited"
	// TLS: the registry's certificate is not trusted, or it does not speak
	// TLS.
	TLS Cause = "TLS"
	// DNS: the registry's name does not resolve.
	DNS Cause = "DNS"
	// Connection: the registry could not be reached.
	Connection Cause = "Connection"
	// Timeout: the registry did not answer in time.
	Timeout Cause = "Timeout"
	// InvalidImageName: the image reference cannot be parsed.
	InvalidImageName Cause = "InvalidImageName"
	// NeverPull: imagePullPolicy Never and the image is not on the node.
	NeverPull Cause = "NeverPull"
	// MissingSecret: the Pod lists a pull Secret that does not exist.
	MissingSecret Cause = "MissingSecret"
	// MalformedSecret: a pull Secret of the Pod cannot be parsed; the
	// kubelet fails every pull of the Pod before contacting a registry.
	MalformedSecret Cause = "MalformedSecret"
	// TokenExpired: the registry refused a cloud token that has expired.
	TokenExpired Cause = "TokenExpired"
	// Other: none of the above.
	Other Cause = "Other"
)

// Causes lists every cause, in a stable order.
var Causes = []Cause{Unauthorized, Denied, NotFound, RateLimited, TLS, DNS, Connection, Timeout,
	InvalidImageName, NeverPull, MissingSecret, MalformedSecret, TokenExpired, Other}

// The kubelet's pull-failure vocabulary: waiting reasons of a container
// and reasons of its Events.
const (
	WaitingErrImagePull      = "ErrImagePull"
	WaitingImagePullBackOff  = "ImagePullBackOff"
	WaitingInvalidImageName  = "InvalidImageName"
	WaitingErrImageNeverPull = "ErrImageNeverPull"
	WaitingRegistryUnavail   = "RegistryUnavailable"

	// EventFailed carries "Failed to pull image ..." (and other failures
	// of a container: the message tells them apart).
	EventFailed = "Failed"
	// EventInspectFailed carries "Failed to apply default image tag ...".
	EventInspectFailed = "InspectFailed"
	// EventNeverPull carries "Container image ... is not present with pull
	// policy of Never".
	EventNeverPull = "ErrImageNeverPull"
	// EventMissingSecret carries "Unable to retrieve some image pull
	// secrets (a, b); ...".
	EventMissingSecret = "FailedToRetrieveImagePullSecret"
	// EventPulled carries "Successfully pulled image ..." (a Normal
	// Event), and "Container image ... already present on machine",
	// which is no pull.
	EventPulled = "Pulled"
)

// IsPullSuccessEvent reports whether a kubelet Event says an image was
// pulled from its registry.
func IsPullSuccessEvent(reason, message string) bool {
	return reason == EventPulled && strings.HasPrefix(uncombined(message), "Successfully pulled image ")
}

// uncombined is an Event message without the prefix the Event recorder
// puts on messages it aggregates.
func uncombined(message string) string {
	return strings.TrimPrefix(message, "(combined from similar events): ")
}

// IsPullAttemptFailure reports whether a kubelet Event says a pull from
// the registry failed (not a missing Secret, an invalid name or a Never
// policy, which reach no registry).
func IsPullAttemptFailure(reason, message string) bool {
	return reason == EventFailed && strings.HasPrefix(uncombined(message), "Failed to pull image ")
}

// PullWaitingReasons are the waiting reasons that mean a pull failed.
var PullWaitingReasons = []string{WaitingErrImagePull, WaitingImagePullBackOff, WaitingInvalidImageName, WaitingErrImageNeverPull, WaitingRegistryUnavail, "ImageInspectError", "SignatureValidationFailed"}

// PullEventReasons are the kubelet Event reasons about pull failures.
var PullEventReasons = []string{EventFailed, EventInspectFailed, EventNeverPull, EventMissingSecret}

// causePatterns map fragments of containerd's and the kubelet's messages to a
// cause, most specific first: "x509" inside a message about a token
// request is a TLS problem, not an authorization one.
var causePatterns = []struct {
	cause Cause
	re    *regexp.Regexp
}{
	{InvalidImageName, regexp.MustCompile(`(?i)invalid reference format|couldn't parse image (name|reference)|failed to apply default image tag`)},
	{NeverPull, regexp.MustCompile(`(?i)is not present with pull policy of never`)},
	{MissingSecret, regexp.MustCompile(`(?i)unable to retrieve some image pull secrets`)},
	{MalformedSecret, regexp.MustCompile(`(?i)error unmarshal+ing json|cannot unmarshal|unexpected end of json|invalid character .* looking for|illegal base64|invalid docker ?config`)},
	{TLS, regexp.MustCompile(`(?i)x509:|tls: |certificate (signed by unknown authority|is not valid|has expired)|server gave http response to https client|first record does not look like a tls handshake`)},
	{DNS, regexp.MustCompile(`(?i)no such host|server misbehaving|lookup [^ ]+ on [^ ]+: |temporary failure in name resolution`)},
	{Timeout, regexp.MustCompile(`(?i)i/o timeout|deadline exceeded|client\.timeout exceeded|timeout awaiting|handshake timeout|timed out`)},
	{Connection, regexp.MustCompile(`(?i)connection refused|connection reset|no route to host|network is unreachable|broken pipe|unexpected eof|: eof\b`)},
	{RateLimited, regexp.MustCompile(`(?i)429 too many requests|toomanyrequests|rate limit`)},
	{Denied, regexp.MustCompile(`(?i)403 forbidden|\bdenied: |requested access to the resource is denied`)},
	{Unauthorized, regexp.MustCompile(`(?i)401 unauthorized|unauthorized: |insufficient_scope|authentication required|pull access denied|failed to authorize|no basic auth credentials`)},
	{NotFound, regexp.MustCompile(`(?i): not found\b|404 not found|manifest unknown|name unknown|repository does not exist|not found: manifest`)},
}

// Classify names the cause of a kubelet pull-failure message (an Event's,
// or a waiting container's). It looks at the message only: the doctor
// refines the cause with what the cluster knows (an expired token, a
// missing Secret).
func Classify(message string) Cause {
	for _, r := range causePatterns {
		if r.re.MatchString(message) {
			return r.cause
		}
	}
	return Other
}

// imageQuoted finds the image a kubelet message is about.
// The runtime's own words count too: a waiting container's message may be
// the bare CRI error, "rpc error: ... failed to pull and unpack image "X"".
var imageQuoted = regexp.MustCompile(`(?:Failed to pull image|Successfully pulled image|Back-off pulling image|Container image|Failed to apply default image tag|image pull failed for|failed to pull and unpack image|failed to resolve reference) "?([^"\s:][^"\s]*)"?`)

// ImageOfMessage is the image a kubelet pull message names, or "".
func ImageOfMessage(message string) string {
	m := imageQuoted.FindStringSubmatch(message)
	if m == nil {
		return ""
	}
	return strings.TrimSuffix(m[1], ":")
}

// MissingSecretNames lists the Secrets of a FailedToRetrieveImagePullSecret
// message: "Unable to retrieve some image pull secrets (a, b); ...".
func MissingSecretNames(message string) []string {
	_, rest, ok := strings.Cut(message, "pull secrets (")
	if !ok {
		return nil
	}
	list, _, ok := strings.Cut(rest, ")")
	if !ok {
		return nil
	}
	var out []string
	for _, n := range strings.Split(list, ",") {
		if n = strings.TrimSpace(n); n != "" {
			out = append(out, n)
		}
	}
	return out
}

// IsPullFailureEvent reports whether a kubelet Event (reason, message) is
// about a failed pull: "Failed" Events are also used for containers that
// fail to start, and only those naming an image count.
func IsPullFailureEvent(reason, message string) bool {
	switch reason {
	case EventInspectFailed, EventNeverPull, EventMissingSecret:
		return true
	case EventFailed:
		return strings.HasPrefix(uncombined(message), "Failed to pull image ")
	}
	return false
}
