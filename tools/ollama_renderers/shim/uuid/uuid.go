// Package uuid stands in for github.com/google/uuid in downsize's renderer recorder: Ollama's api package only
// names the type (a field no renderer reads).
package uuid

type UUID [16]byte
