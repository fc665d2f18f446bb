package controller

import (
	"fmt"
	"reflect"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func samePointer(a, b any) bool { return reflect.ValueOf(a).Pointer() == reflect.ValueOf(b).Pointer() }

func TestInternShares(t *testing.T) {
	a := internStrings(map[string]string{"x": "1", "y": "2"})
	b := internStrings(map[string]string{"y": "2", "x": "1"})
	if !samePointer(a, b) {
		t.Error("equal maps are not shared")
	}
	// "x"="1\x00y" is not {"x":"1","y":...}: the separator cannot fold two maps together.
	c := internStrings(map[string]string{"x": "1", "y": "3"})
	if samePointer(a, c) || c["y"] != "3" {
		t.Errorf("different maps shared: %v", c)
	}
	// A value holding NUL must not fold into the map whose keys it spells.
	two := internStrings(map[string]string{"regcred.dev/credential": "X", "regcred.dev/pull-secrets": "Y"})
	one := internStrings(map[string]string{"regcred.dev/credential": "X\x00\x18regcred.dev/pull-secrets\x00Y"})
	one0 := internStrings(map[string]string{"regcred.dev/credential": "X\x00regcred.dev/pull-secrets\x00Y"})
	if samePointer(two, one) || samePointer(two, one0) || len(one) != 1 || len(one0) != 1 || len(two) != 2 {
		t.Errorf("NUL-bearing value shared another map: %v %v %v", two, one, one0)
	}
	if internStrings(nil) != nil {
		t.Error("nil map interned")
	}
	yes, no := true, false
	o1 := internOwners([]metav1.OwnerReference{{APIVersion: "regcred.dev/v1alpha1", Kind: "ClusterRegistryCredential", Name: "a", UID: "u1", Controller: &yes}})
	o2 := internOwners([]metav1.OwnerReference{{APIVersion: "regcred.dev/v1alpha1", Kind: "ClusterRegistryCredential", Name: "a", UID: "u1", Controller: &yes}})
	o3 := internOwners([]metav1.OwnerReference{{APIVersion: "regcred.dev/v1alpha1", Kind: "ClusterRegistryCredential", Name: "a", UID: "u1", Controller: &no}})
	o4 := internOwners([]metav1.OwnerReference{{APIVersion: "regcred.dev/v1alpha1", Kind: "ClusterRegistryCredential", Name: "a", UID: "u2", Controller: &yes}})
	if !samePointer(o1, o2) || samePointer(o1, o3) || samePointer(o1, o4) || *o3[0].Controller || o4[0].UID != "u2" {
		t.Errorf("owner references: %v %v %v %v", o1, o2, o3, o4)
	}
	d1 := internData("k", []byte("one"))
	d2 := internData("k", []byte("one"))
	d3 := internData("k", []byte("two"))
	if !samePointer(d1, d2) || samePointer(d1, d3) || string(d3["k"]) != "two" || string(d1["k"]) != "one" {
		t.Errorf("data: %v %v %v", d1, d2, d3)
	}
}

func TestInternIsBounded(t *testing.T) {
	var in interner[map[string]string]
	for i := range 3 * maxInterned {
		k := fmt.Sprint(i)
		v := in.get(k, func() map[string]string { return map[string]string{"v": k} })
		if v["v"] != k {
			t.Fatalf("%s: got %v", k, v)
		}
	}
	if len(in.m) > maxInterned {
		t.Errorf("table holds %d entries, bound %d", len(in.m), maxInterned)
	}
	big := string(make([]byte, maxInternedBytes/2+1))
	in.get(big+"a", func() map[string]string { return nil })
	in.get(big+"b", func() map[string]string { return nil })
	if in.bytes > maxInternedBytes {
		t.Errorf("table holds %d bytes of keys, bound %d", in.bytes, maxInternedBytes)
	}
}
