// Command probe renders conversations with Ollama's built-in renderers (model/renderers) for downsize's
// recorder: it reads {"renderers": [...], "cases": [{"messages": [...], "tools": [...]}]} as JSON on stdin
// (messages and tools as an Ollama /api/chat request carries them) and writes, per renderer, each case's
// prompt or error, and the renderer's leading BOS.
package main

import (
	"encoding/json"
	"os"

	"github.com/ollama/ollama/api"
	"github.com/ollama/ollama/model/renderers"
)

type probeCase struct {
	Messages []api.Message `json:"messages"`
	Tools    []api.Tool    `json:"tools"`
}

type result struct {
	Text  string `json:"text"`
	Error string `json:"error,omitempty"`
}

func main() {
	var in struct {
		Renderers []string    `json:"renderers"`
		Cases     []probeCase `json:"cases"`
	}
	if err := json.NewDecoder(os.Stdin).Decode(&in); err != nil {
		os.Stderr.WriteString("probe: bad input: " + err.Error() + "\n")
		os.Exit(2)
	}
	out := map[string]any{}
	for _, name := range in.Renderers {
		rows := []result{}
		for _, c := range in.Cases {
			text, err := func() (text string, err error) {
				defer func() {
					if r := recover(); r != nil {
						err = &panicErr{r}
					}
				}()
				return renderers.RenderWithRenderer(name, c.Messages, c.Tools, nil)
			}()
			r := result{Text: text}
			if err != nil {
				r.Error = err.Error()
			}
			rows = append(rows, r)
		}
		out[name] = map[string]any{"bos": renderers.LeadingBOSForRenderer(name), "results": rows}
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(out); err != nil {
		os.Exit(1)
	}
}

type panicErr struct{ v any }

func (p *panicErr) Error() string { b, _ := json.Marshal(p.v); return "panic: " + string(b) }
