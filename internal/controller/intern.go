package controller

import (
	"crypto/sha256"
	"encoding/binary"
	"sort"
	"sync"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The cached copies of one credential carry the same label, the same
// owner annotation and owner reference and, per source version, the same
// data; the ServiceAccounts of a cluster mostly the same tracking
// annotation. A Go map costs about 300 bytes however small, so at 10,000
// namespaces x 3 credentials one map per field per object is some 30 MiB
// of identical maps. The trims share one value among all objects with the
// same content.
//
// A shared map or slice must never be written: nothing writes cached
// objects (the client hands out deep copies, and the few
// UnsafeDisableDeepCopy readers only read). The tables are bounded, and
// emptied when full: tenants can make as many distinct values as they
// like, which then only cost what they cost before; old values live on
// only in the objects still holding them.

const (
	maxInterned      = 1024
	maxInternedBytes = 1 << 20
)

type interner[V any] struct {
	mu    sync.Mutex
	m     map[string]V
	bytes int
}

// get returns the shared value for key, storing make()'s when there is
// none.
func (in *interner[V]) get(key string, make func() V) V {
	in.mu.Lock()
	defer in.mu.Unlock()
	if v, ok := in.m[key]; ok {
		return v
	}
	if in.m == nil || len(in.m) >= maxInterned || in.bytes+len(key) > maxInternedBytes {
		in.m, in.bytes = map[string]V{}, 0
	}
	v := make()
	in.m[key] = v
	in.bytes += len(key)
	return v
}

var (
	internedStrings interner[map[string]string]
	internedData    interner[map[string][]byte]
	internedOwners  interner[[]metav1.OwnerReference]
)

// appendField appends f length-prefixed, so no two sequences of fields
// spell the same key.
func appendField(b []byte, f string) []byte {
	b = binary.AppendUvarint(b, uint64(len(f)))
	return append(b, f...)
}

func boolField(p *bool) string {
	switch {
	case p == nil:
		return ""
	case *p:
		return "t"
	}
	return "f"
}

// internOwners returns owner references equal to refs that objects share:
// every copy of one credential names the same owner.
func internOwners(refs []metav1.OwnerReference) []metav1.OwnerReference {
	if len(refs) == 0 {
		return refs
	}
	var b []byte
	for _, r := range refs {
		for _, f := range []string{r.APIVersion, r.Kind, r.Name, string(r.UID), boolField(r.Controller), boolField(r.BlockOwnerDeletion)} {
			b = appendField(b, f)
		}
	}
	return internedOwners.get(string(b), func() []metav1.OwnerReference { return refs })
}

// internStrings returns a map equal to m that objects share.
func internStrings(m map[string]string) map[string]string {
	if len(m) == 0 {
		return m
	}
	keys := make([]string, 0, len(m))
	size := 0
	for k, v := range m {
		keys = append(keys, k)
		size += len(k) + len(v)
	}
	sort.Strings(keys)
	// Each string is length-prefixed: annotation values may hold NUL, and
	// with a separator {a: "x\x00b\x00y"} would share {a: "x", b: "y"}'s
	// map, letting one tenant's object change what regcred sees of
	// another's.
	b := make([]byte, 0, size+len(m)*2*binary.MaxVarintLen64)
	for _, k := range keys {
		b = appendField(appendField(b, k), m[k])
	}
	return internedStrings.get(string(b), func() map[string]string { return m })
}

// internData returns a map of one key, equal to {key: data}, that objects
// share. The table is keyed by the data's digest, so it holds no copy of
// the data of its own.
func internData(key string, data []byte) map[string][]byte {
	sum := sha256.Sum256(data)
	return internedData.get(key+"\x00"+string(sum[:]), func() map[string][]byte { return map[string][]byte{key: data} })
}
