package main

import (
	"context"
	"fmt"
	"reflect"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
)

// memReader answers like controller-runtime's informer cache: objects held
// in memory, deep-copied on every read. (The fake client serializes on
// every call, which would measure the fake, not the webhook.)
type memReader struct {
	scheme *runtime.Scheme
	objs   map[schema.GroupVersionKind]map[client.ObjectKey]client.Object
}

func newMemReader(scheme *runtime.Scheme, objs ...client.Object) *memReader {
	m := &memReader{scheme: scheme, objs: map[schema.GroupVersionKind]map[client.ObjectKey]client.Object{}}
	for _, o := range objs {
		gvk, err := apiutil.GVKForObject(o, scheme)
		if err != nil {
			panic(err)
		}
		if m.objs[gvk] == nil {
			m.objs[gvk] = map[client.ObjectKey]client.Object{}
		}
		m.objs[gvk][client.ObjectKeyFromObject(o)] = o
	}
	return m
}

func (m *memReader) Get(_ context.Context, key client.ObjectKey, obj client.Object, _ ...client.GetOption) error {
	gvk, err := apiutil.GVKForObject(obj, m.scheme)
	if err != nil {
		return err
	}
	o, ok := m.objs[gvk][key]
	if !ok {
		return apierrors.NewNotFound(schema.GroupResource{Resource: gvk.Kind}, key.Name)
	}
	reflect.ValueOf(obj).Elem().Set(reflect.ValueOf(o.DeepCopyObject()).Elem())
	return nil
}

func (m *memReader) List(_ context.Context, list client.ObjectList, _ ...client.ListOption) error {
	gvk, err := apiutil.GVKForObject(list, m.scheme)
	if err != nil {
		return err
	}
	itemGVK := gvk.GroupVersion().WithKind(gvk.Kind[:len(gvk.Kind)-len("List")])
	var items []runtime.Object
	for _, o := range m.objs[itemGVK] {
		items = append(items, o.DeepCopyObject())
	}
	if err := meta.SetList(list, items); err != nil {
		return fmt.Errorf("list %s: %w", itemGVK, err)
	}
	return nil
}
