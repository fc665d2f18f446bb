// Package dockercfg parses and renders registry credentials in the formats
// Kubernetes pull Secrets carry: .dockerconfigjson (the "auths" wrapper),
// the legacy .dockercfg, and kubernetes.io/basic-auth.
//
// Parsing follows the kubelet's pkg/credentialprovider exactly: a non-empty
// "auth" field wins over "username"/"password", it is decoded as padded
// base64 when it ends in "=" and unpadded otherwise, and one malformed entry
// makes the whole config unusable (the kubelet then fails every pull of the
// Pod). JSON keys match case-insensitively, as encoding/json does for the
// kubelet.
//
// Errors name the entry and the field, never a value.
package dockercfg

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Secret types and data keys, as in k8s.io/api/core/v1 (repeated here so the
// package needs no Kubernetes dependency).
const (
	SecretTypeDockerConfigJSON = "kubernetes.io/dockerconfigjson"
	SecretTypeDockercfg        = "kubernetes.io/dockercfg"
	SecretTypeBasicAuth        = "kubernetes.io/basic-auth"

	DockerConfigJSONKey = ".dockerconfigjson"
	DockercfgKey        = ".dockercfg"
	BasicAuthUsername   = "username"
	BasicAuthPassword   = "password"
)

// Entry is the credential for one registry key.
type Entry struct {
	Username string
	Password string
	Email    string
	// IdentityToken is an OAuth refresh token some registries (ACR, Docker
	// Desktop logins) issue. The kubelet ignores it when reading pull
	// Secrets; it is kept so that rendering round-trips it to clients that
	// use it.
	IdentityToken string
}

// String never prints the password or token, so an Entry that slips into a
// log line or error leaks nothing.
func (e Entry) String() string {
	return fmt.Sprintf("{username:%q password:%s}", e.Username, redacted(e.Password))
}

// GoString keeps %#v as safe as %v.
func (e Entry) GoString() string { return e.String() }

func redacted(s string) string {
	if s == "" {
		return "<empty>"
	}
	return "<redacted>"
}

// Config is a set of credentials keyed by registry key, exactly as written
// in the source (scheme, path and all).
type Config struct {
	Auths map[string]Entry
}

// Keys returns the registry keys in sorted order.
func (c *Config) Keys() []string {
	keys := make([]string, 0, len(c.Auths))
	for k := range c.Auths {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Error is a parse error. It names where the problem is and never carries a
// value from the input.
type Error struct {
	// Entry is the registry key of the offending entry, empty when the
	// problem is with the document as a whole.
	Entry string
	// Field is the JSON field (or Secret data key) at fault, if known.
	Field string
	// Problem says what is wrong.
	Problem string
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.Entry != "" {
		fmt.Fprintf(&b, "entry %q: ", e.Entry)
	}
	if e.Field != "" {
		fmt.Fprintf(&b, "field %q: ", e.Field)
	}
	b.WriteString(e.Problem)
	return b.String()
}

// ErrEmpty reports a config with no entries where at least one is required.
var ErrEmpty = errors.New("no registry entries")

// ParseDockerConfigJSON parses the content of a .dockerconfigjson key:
// {"auths": {"<registry key>": {...}}}.
func ParseDockerConfigJSON(data []byte) (*Config, error) {
	var doc struct {
		Auths map[string]json.RawMessage `json:"auths"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, documentError(err, "auths")
	}
	cfg, err := parseEntries(doc.Auths)
	if err != nil {
		return nil, err
	}
	var every struct {
		Auths map[string]repeatedEntry `json:"auths"`
	}
	if err := json.Unmarshal(data, &every); err != nil {
		return nil, repeatedError(err)
	}
	return cfg, nil
}

// ParseDockercfg parses the content of a legacy .dockercfg key: the map of
// registry keys to entries, without the "auths" wrapper.
func ParseDockercfg(data []byte) (*Config, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, documentError(err, "")
	}
	cfg, err := parseEntries(raw)
	if err != nil {
		return nil, err
	}
	var every map[string]repeatedEntry
	if err := json.Unmarshal(data, &every); err != nil {
		return nil, repeatedError(err)
	}
	return cfg, nil
}

// repeatedEntry checks an entry that a later one under the same key may
// hide: a map keeps only the last, but the kubelet decodes every one and
// refuses the whole config when any of them is invalid.
type repeatedEntry struct{}

func (repeatedEntry) UnmarshalJSON(raw []byte) error {
	if _, err := parseEntry(raw); err != nil {
		return err
	}
	return nil
}

func repeatedError(err error) *Error {
	var e *Error
	if !errors.As(err, &e) {
		e = documentError(err, "")
	}
	return &Error{Field: e.Field, Problem: "an entry repeated under the same registry key: " + e.Problem}
}

// ParseBasicAuth builds a config from a kubernetes.io/basic-auth Secret's
// data, with one entry per registry key: the Secret itself names no
// registry.
func ParseBasicAuth(data map[string][]byte, registries []string) (*Config, error) {
	user, hasUser := data[BasicAuthUsername]
	pass, hasPass := data[BasicAuthPassword]
	if !hasUser && !hasPass {
		return nil, &Error{Problem: "basic-auth data has neither a username nor a password key"}
	}
	if len(registries) == 0 {
		return nil, &Error{Problem: "basic-auth credentials need at least one registry to apply to"}
	}
	if strings.Contains(string(user), ":") {
		return nil, &Error{Field: BasicAuthUsername, Problem: "username must not contain a colon (registries split user:password at the first colon)"}
	}
	cfg := &Config{Auths: make(map[string]Entry, len(registries))}
	for _, r := range registries {
		cfg.Auths[r] = Entry{Username: string(user), Password: string(pass)}
	}
	return cfg, nil
}

// ParseSecretData parses a Secret's data according to its type. Basic-auth
// Secrets take their registry keys from registries; the other types ignore
// it. A Secret of a type the kubelet does not read, or without its data key,
// is an error.
func ParseSecretData(secretType string, data map[string][]byte, registries []string) (*Config, error) {
	switch secretType {
	case SecretTypeDockerConfigJSON:
		b, ok := data[DockerConfigJSONKey]
		if !ok || len(b) == 0 {
			return nil, &Error{Field: DockerConfigJSONKey, Problem: "missing or empty"}
		}
		cfg, err := ParseDockerConfigJSON(b)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", DockerConfigJSONKey, err)
		}
		return cfg, nil
	case SecretTypeDockercfg:
		b, ok := data[DockercfgKey]
		if !ok || len(b) == 0 {
			return nil, &Error{Field: DockercfgKey, Problem: "missing or empty"}
		}
		cfg, err := ParseDockercfg(b)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", DockercfgKey, err)
		}
		return cfg, nil
	case SecretTypeBasicAuth:
		return ParseBasicAuth(data, registries)
	default:
		return nil, &Error{Problem: fmt.Sprintf("secret type %q is not a registry credential (want %s, %s or %s)",
			secretType, SecretTypeDockerConfigJSON, SecretTypeDockercfg, SecretTypeBasicAuth)}
	}
}

// entryJSON is the on-the-wire form of one entry, with the fields the
// kubelet decodes.
type entryJSON struct {
	Username string `json:"username,omitempty"`
	Password string `json:"password,omitempty"`
	Email    string `json:"email,omitempty"`
	Auth     string `json:"auth,omitempty"`
}

func parseEntries(raw map[string]json.RawMessage) (*Config, error) {
	cfg := &Config{Auths: make(map[string]Entry, len(raw))}
	keys := make([]string, 0, len(raw))
	for k := range raw {
		keys = append(keys, k)
	}
	// Sorted so that the error reported for a config with several bad
	// entries does not change from run to run.
	sort.Strings(keys)
	for _, key := range keys {
		e, err := parseEntry(raw[key])
		if err != nil {
			err.Entry = key
			return nil, err
		}
		cfg.Auths[key] = e
	}
	return cfg, nil
}

func parseEntry(raw json.RawMessage) (Entry, *Error) {
	var wire entryJSON
	if err := json.Unmarshal(raw, &wire); err != nil {
		return Entry{}, documentError(err, "")
	}
	e := Entry{Username: wire.Username, Password: wire.Password, Email: wire.Email}
	// The kubelet ignores identitytoken; decode it on the side so that a
	// badly typed one cannot fail a config the kubelet accepts.
	var side struct {
		IdentityToken json.RawMessage `json:"identitytoken"`
	}
	if json.Unmarshal(raw, &side) == nil && len(side.IdentityToken) > 0 {
		var tok string
		if json.Unmarshal(side.IdentityToken, &tok) == nil {
			e.IdentityToken = tok
		}
	}
	if len(wire.Auth) == 0 {
		return e, nil
	}
	user, pass, perr := DecodeAuth(wire.Auth)
	if perr != nil {
		return Entry{}, perr
	}
	e.Username, e.Password = user, pass
	return e, nil
}

// DecodeAuth decodes an "auth" field, base64("user:password"), the way the
// kubelet does: padded standard encoding when the trimmed field ends in "=",
// unpadded otherwise; newlines are ignored, any other whitespace is an error.
func DecodeAuth(field string) (username, password string, err *Error) {
	var decoded []byte
	var derr error
	if strings.HasSuffix(strings.TrimSpace(field), "=") {
		decoded, derr = base64.StdEncoding.DecodeString(field)
	} else {
		decoded, derr = base64.RawStdEncoding.DecodeString(field)
	}
	if derr != nil {
		return "", "", &Error{Field: "auth", Problem: "not valid base64"}
	}
	user, pass, ok := strings.Cut(string(decoded), ":")
	if !ok {
		return "", "", &Error{Field: "auth", Problem: "does not decode to username:password"}
	}
	return user, pass, nil
}

// EncodeAuth is the "auth" field for a username and password.
func EncodeAuth(username, password string) string {
	return base64.StdEncoding.EncodeToString([]byte(username + ":" + password))
}

// documentError turns an encoding/json error into an Error without quoting
// any of the input: syntax errors give the byte offset, type errors the
// field path and the expected type.
func documentError(err error, top string) *Error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		if syn.Offset == 0 || strings.HasPrefix(syn.Error(), "unexpected end") {
			return &Error{Problem: "truncated or empty JSON"}
		}
		return &Error{Problem: fmt.Sprintf("malformed JSON near byte %d", syn.Offset)}
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			field = top
		}
		want := typ.Type.String()
		switch want {
		case "map[string]json.RawMessage":
			want = "an object of registry entries"
		case "dockercfg.entryJSON":
			want = "an object"
		}
		// Value is "number 123" for numbers: keep only the kind.
		got, _, _ := strings.Cut(typ.Value, " ")
		return &Error{Field: field, Problem: fmt.Sprintf("expected %s, got a JSON %s", want, got)}
	default:
		return &Error{Problem: "malformed JSON"}
	}
}

// ReadFile reads a docker config file: config.json, or the legacy format
// when the file is named .dockercfg.
func ReadFile(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read docker config: %w", err)
	}
	var cfg *Config
	if filepath.Base(path) == ".dockercfg" {
		cfg, err = ParseDockercfg(b)
	} else {
		cfg, err = ParseDockerConfigJSON(b)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return cfg, nil
}
