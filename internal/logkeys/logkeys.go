// Package logkeys holds the structured log keys every package uses, so
// that a log query for one credential or namespace finds every line about
// it, whichever component wrote it. Values under these keys never carry a
// secret.
package logkeys

const (
	// Namespace a line is about (not the credential's own namespace).
	Namespace = "namespace"
	// Credential is a credential's key, credential.Key.String() or its
	// Display() form on Pods.
	Credential = "credential"
	// Secret is a Secret's name, or namespace/name.
	Secret = "secret"
	// ServiceAccount is a ServiceAccount's name.
	ServiceAccount = "serviceAccount"
	// Reason is why something failed or changed, in words.
	Reason = "reason"
	// Status of a condition.
	Status = "status"
	// UID of an admission request.
	UID = "uid"
	// Problem is an object a component cannot use, and why.
	Problem = "problem"
	// Count of objects a line is about.
	Count = "count"
	// Configuration is a MutatingWebhookConfiguration's name.
	Configuration = "configuration"
)
