// Renders an Ollama-style TEMPLATE with Go's text/template, as Ollama does, for tests/export/test_ollama.py.
// Usage: gorender TEMPLATE_FILE < data.json   (data: {"Messages": [{"Role", "Content", "ToolCalls"}], "System": ""})
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"text/template"
)

type ToolCallFunction struct {
	Name      string         `json:"name"`
	Arguments map[string]any `json:"arguments"`
}

type ToolCall struct {
	Function ToolCallFunction `json:"function"`
}

type Message struct {
	Role      string     `json:"role"`
	Content   string     `json:"content"`
	ToolCalls []ToolCall `json:"tool_calls"`
}

type Values struct {
	Messages []Message `json:"messages"`
	System   string    `json:"system"`
}

func main() {
	src, err := os.ReadFile(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	funcs := template.FuncMap{"json": func(v any) string { b, _ := json.Marshal(v); return string(b) }}
	tmpl, err := template.New("t").Funcs(funcs).Parse(string(src))
	if err != nil {
		fmt.Fprintln(os.Stderr, "parse:", err)
		os.Exit(3)
	}
	var v Values
	if err := json.NewDecoder(os.Stdin).Decode(&v); err != nil {
		fmt.Fprintln(os.Stderr, "data:", err)
		os.Exit(4)
	}
	if err := tmpl.Execute(os.Stdout, v); err != nil {
		fmt.Fprintln(os.Stderr, "exec:", err)
		os.Exit(5)
	}
}
