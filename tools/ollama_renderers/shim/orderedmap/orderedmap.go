// Package orderedmap stands in for Ollama's internal/orderedmap (which wraps a third-party module that cannot be
// downloaded here) with the same exported API: a map that keeps insertion order, also through JSON.
// Written for downsize's renderer recorder; only what Ollama's api package calls is provided.
package orderedmap

import (
	"bytes"
	"encoding/json"
	"fmt"
	"iter"
)

type Map[K comparable, V any] struct {
	keys []K
	vals map[K]V
}

func New[K comparable, V any]() *Map[K, V] { return &Map[K, V]{vals: map[K]V{}} }

func (m *Map[K, V]) Get(key K) (V, bool) {
	if m == nil || m.vals == nil {
		var zero V
		return zero, false
	}
	v, ok := m.vals[key]
	return v, ok
}

func (m *Map[K, V]) Set(key K, value V) {
	if m == nil {
		return
	}
	if m.vals == nil {
		m.vals = map[K]V{}
	}
	if _, ok := m.vals[key]; !ok {
		m.keys = append(m.keys, key)
	}
	m.vals[key] = value
}

func (m *Map[K, V]) Len() int {
	if m == nil {
		return 0
	}
	return len(m.keys)
}

func (m *Map[K, V]) All() iter.Seq2[K, V] {
	return func(yield func(K, V) bool) {
		if m == nil {
			return
		}
		for _, k := range m.keys {
			if !yield(k, m.vals[k]) {
				return
			}
		}
	}
}

func (m *Map[K, V]) ToMap() map[K]V {
	if m == nil || m.vals == nil {
		return nil
	}
	out := make(map[K]V, len(m.keys))
	for _, k := range m.keys {
		out[k] = m.vals[k]
	}
	return out
}

func (m *Map[K, V]) MarshalJSON() ([]byte, error) {
	if m == nil || m.vals == nil {
		return []byte("null"), nil
	}
	var b bytes.Buffer
	b.WriteByte('{')
	for i, k := range m.keys {
		if i > 0 {
			b.WriteByte(',')
		}
		kb, err := json.Marshal(fmt.Sprint(k))
		if err != nil {
			return nil, err
		}
		vb, err := json.Marshal(m.vals[k])
		if err != nil {
			return nil, err
		}
		b.Write(kb)
		b.WriteByte(':')
		b.Write(vb)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

func (m *Map[K, V]) UnmarshalJSON(data []byte) error {
	m.keys, m.vals = nil, map[K]V{}
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if tok == nil { // null
		return nil
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return fmt.Errorf("orderedmap: want a JSON object, got %v", tok)
	}
	for dec.More() {
		kt, err := dec.Token()
		if err != nil {
			return err
		}
		ks, ok := kt.(string)
		if !ok {
			return fmt.Errorf("orderedmap: key %v is not a string", kt)
		}
		key, ok := any(ks).(K)
		if !ok {
			return fmt.Errorf("orderedmap: only string keys are supported")
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return err
		}
		var v V
		if err := json.Unmarshal(raw, &v); err != nil {
			return err
		}
		m.Set(key, v)
	}
	_, err = dec.Token()
	return err
}
