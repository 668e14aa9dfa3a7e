// Command probe runs Ollama's built-in renderers (model/renderers) and output parsers (model/parsers) for
// downsize's recorder. It reads {"renderers": [...], "cases": [{"messages": [...], "tools": [...]}],
// "parsers": [...], "outputs": [{"text": ..., "tools": [...]}]} as JSON on stdin (messages and tools as an
// Ollama /api/chat request carries them) and writes, per renderer, each case's prompt or error and the
// renderer's leading BOS, and per parser, what it makes of each model output (content, thinking, tool calls).
package main

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/ollama/ollama/api"
	"github.com/ollama/ollama/model/parsers"
	"github.com/ollama/ollama/model/renderers"
)

type modelOutput struct {
	Text  string     `json:"text"`
	Tools []api.Tool `json:"tools"`
}

type parsed struct {
	Content  string         `json:"content"`
	Thinking string         `json:"thinking"`
	Calls    []api.ToolCall `json:"calls"`
	Error    string         `json:"error,omitempty"`
}

func parse(name string, o modelOutput) (res parsed) {
	defer func() {
		if r := recover(); r != nil {
			res = parsed{Error: (&panicErr{r}).Error()}
		}
	}()
	p := parsers.ParserForName(name)
	if p == nil {
		return parsed{Error: "unknown parser"}
	}
	p.Init(o.Tools, nil, nil)
	content, thinking, calls, err := p.Add(o.Text, true)
	res = parsed{Content: content, Thinking: thinking, Calls: calls}
	if err != nil {
		res.Error = err.Error()
	}
	return res
}

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
		Renderers []string      `json:"renderers"`
		Cases     []probeCase   `json:"cases"`
		Parsers   []string      `json:"parsers"`
		Outputs   []modelOutput `json:"outputs"`
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
				first, err := renderers.RenderWithRenderer(name, c.Messages, c.Tools, nil)
				// a renderer that ranges over a Go map writes a different prompt from run to run: not recorded
				for k := 0; err == nil && k < 8; k++ {
					again, err2 := renderers.RenderWithRenderer(name, c.Messages, c.Tools, nil)
					if err2 != nil || again != first {
						return "", fmt.Errorf("renders differently from run to run (ranges over a Go map)")
					}
				}
				return first, err
			}()
			r := result{Text: text}
			if err != nil {
				r.Error = err.Error()
			}
			rows = append(rows, r)
		}
		out[name] = map[string]any{"bos": renderers.LeadingBOSForRenderer(name), "results": rows}
	}
	parsedBy := map[string][]parsed{}
	for _, name := range in.Parsers {
		rows := []parsed{}
		for _, o := range in.Outputs {
			rows = append(rows, parse(name, o))
		}
		parsedBy[name] = rows
	}
	out["__parsers__"] = parsedBy
	enc := json.NewEncoder(os.Stdout)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(out); err != nil {
		os.Exit(1)
	}
}

type panicErr struct{ v any }

func (p *panicErr) Error() string { b, _ := json.Marshal(p.v); return "panic: " + string(b) }
