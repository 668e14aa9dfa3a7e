// gorender renders Ollama-style TEMPLATEs with Go's text/template on Ollama's chat data model, in one batch.
//
// It models what Ollama's template.Execute hands a TEMPLATE (template/template.go in github:ollama/ollama):
// messages are collated (consecutive same-role messages joined by a blank line, tool messages kept apart),
// .System is every system message joined, .Messages / .Tools use Ollama's template-facing types (their String()
// is compact JSON), and the helper functions json, currentDate, yesterdayDate and toTypeScriptType exist.
// Written for downsize's export check; it does not import Ollama (that needs a newer Go and the network).
//
//	go build -o gorender main.go
//	echo '{"templates": ["{{ range .Messages }}{{ .Content }}{{ end }}"],
//	       "cases": [{"template": 0, "messages": [{"role": "user", "content": "hi"}]}]}' | ./gorender
//	{"results":[{"out":"hi"}],"tags":["{"]}
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"text/template"
	"text/template/parse"
	"time"
)

// ---- request side (Ollama's API JSON) ------------------------------------------------------------------------

type apiToolCall struct {
	ID       string `json:"id"`
	Function struct {
		Index     int            `json:"index"`
		Name      string         `json:"name"`
		Arguments map[string]any `json:"arguments"`
	} `json:"function"`
}

type apiMessage struct {
	Role       string        `json:"role"`
	Content    string        `json:"content"`
	Thinking   string        `json:"thinking"`
	ToolCalls  []apiToolCall `json:"tool_calls"`
	ToolName   string        `json:"tool_name"`
	ToolCallID string        `json:"tool_call_id"`
}

// PropertyType is a JSON-schema "type": one string or a list of them (written back as it came).
type PropertyType []string

func (p *PropertyType) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*p = PropertyType{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return err
	}
	*p = many
	return nil
}

func (p PropertyType) MarshalJSON() ([]byte, error) {
	if len(p) == 1 {
		return json.Marshal(p[0])
	}
	return json.Marshal([]string(p))
}

type ToolProperty struct {
	AnyOf       []ToolProperty          `json:"anyOf,omitempty"`
	Type        PropertyType            `json:"type,omitempty"`
	Items       any                     `json:"items,omitempty"`
	Description string                  `json:"description,omitempty"`
	Enum        []any                   `json:"enum,omitempty"`
	Properties  *ToolPropertiesMap      `json:"properties,omitempty"`
	Required    []string                `json:"required,omitempty"`
}

// ToolPropertiesMap is a nested object's "properties" as Ollama's api package has it: an ordered-map struct, not a
// Go map (only a tool's top-level properties are handed to templates as a map). A TEMPLATE reaches its entries
// through ToMap (sorted keys, like any Go map) or Len; ranging over it, len and index fail, as they do in Ollama.
// (Ollama's All, an iterator, is left out: it needs Go >= 1.23 and no translation uses it.)
type ToolPropertiesMap struct {
	keys []string
	vals map[string]ToolProperty
}

func (t *ToolPropertiesMap) Len() int {
	if t == nil {
		return 0
	}
	return len(t.keys)
}

func (t *ToolPropertiesMap) ToMap() map[string]ToolProperty {
	if t == nil {
		return nil
	}
	out := make(map[string]ToolProperty, len(t.keys))
	for _, k := range t.keys {
		out[k] = t.vals[k]
	}
	return out
}

func (t ToolPropertiesMap) MarshalJSON() ([]byte, error) {
	if t.vals == nil {
		return []byte("null"), nil
	}
	var b bytes.Buffer
	b.WriteByte('{')
	for i, k := range t.keys {
		if i > 0 {
			b.WriteByte(',')
		}
		kb, _ := json.Marshal(k)
		vb, err := json.Marshal(t.vals[k])
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

func (t *ToolPropertiesMap) UnmarshalJSON(data []byte) error {
	t.keys, t.vals = nil, map[string]ToolProperty{}
	dec := json.NewDecoder(bytes.NewReader(data))
	if _, err := dec.Token(); err != nil { // '{'
		return err
	}
	for dec.More() {
		kt, err := dec.Token()
		if err != nil {
			return err
		}
		k, _ := kt.(string)
		var v ToolProperty
		if err := dec.Decode(&v); err != nil {
			return err
		}
		if _, seen := t.vals[k]; !seen {
			t.keys = append(t.keys, k)
		}
		t.vals[k] = v
	}
	_, err := dec.Token()
	return err
}

// ---- template side (Ollama's templateMessage / templateTool) -------------------------------------------------

type templateArgs map[string]any

func (t templateArgs) String() string {
	if t == nil {
		return "{}"
	}
	b, _ := json.Marshal(map[string]any(t))
	return string(b)
}

type templateProperties map[string]ToolProperty

func (t templateProperties) String() string {
	if t == nil {
		return "{}"
	}
	b, _ := json.Marshal(map[string]ToolProperty(t))
	return string(b)
}

type templateToolCallFunction struct {
	Index     int
	Name      string
	Arguments templateArgs
}

type templateToolCall struct {
	ID       string
	Function templateToolCallFunction
}

type templateMessage struct {
	Role       string
	Content    string
	Thinking   string
	Images     []string
	ToolCalls  []templateToolCall
	ToolName   string
	ToolCallID string
}

type templateToolFunctionParameters struct {
	Type       string             `json:"type"`
	Defs       any                `json:"$defs,omitempty"`
	Items      any                `json:"items,omitempty"`
	Required   []string           `json:"required,omitempty"`
	Properties templateProperties `json:"properties"`
}

type templateToolFunction struct {
	Name        string                         `json:"name"`
	Description string                         `json:"description"`
	Parameters  templateToolFunctionParameters `json:"parameters"`
}

type templateTool struct {
	Type     string               `json:"type"`
	Items    any                  `json:"items,omitempty"`
	Function templateToolFunction `json:"function"`
}

func (t templateTool) String() string { b, _ := json.Marshal(t); return string(b) }

type templateTools []templateTool

func (t templateTools) String() string { b, _ := json.Marshal([]templateTool(t)); return string(b) }

// ---- batch protocol --------------------------------------------------------------------------------------------

type renderCase struct {
	Template int            `json:"template"`
	Messages []apiMessage   `json:"messages"`
	Tools    []templateTool `json:"tools"`
}

type batch struct {
	Templates []string     `json:"templates"`
	Cases     []renderCase `json:"cases"`
}

type output struct {
	Results []result `json:"results"`
	Tags    []string `json:"tags"` // the tool-call tag Ollama derives from each TEMPLATE ("{": none found)
}

type result struct {
	Out   string `json:"out"`
	Error string `json:"error,omitempty"`
}

var funcs = template.FuncMap{
	"json": func(v any) string { b, _ := json.Marshal(v); return string(b) },
	// Ollama ignores the format argument: always YYYY-MM-DD.
	"currentDate":   func(args ...string) string { return time.Now().Format("2006-01-02") },
	"yesterdayDate": func(args ...string) string { return time.Now().AddDate(0, 0, -1).Format("2006-01-02") },
	"toTypeScriptType": func(v any) string {
		if p, ok := v.(ToolProperty); ok && len(p.Type) > 0 {
			return strings.Join(p.Type, " | ")
		}
		return "any"
	},
}

// collate: what Ollama's template.Execute does before rendering.
func collate(msgs []apiMessage) (string, []*templateMessage) {
	var system []string
	var out []*templateMessage
	for _, m := range msgs {
		if m.Role == "system" {
			system = append(system, m.Content)
		}
		if len(out) > 0 && out[len(out)-1].Role == m.Role && m.Role != "tool" {
			out[len(out)-1].Content += "\n\n" + m.Content
			continue
		}
		var calls []templateToolCall
		for _, c := range m.ToolCalls {
			calls = append(calls, templateToolCall{ID: c.ID, Function: templateToolCallFunction{
				Index: c.Function.Index, Name: c.Function.Name, Arguments: templateArgs(c.Function.Arguments)}})
		}
		out = append(out, &templateMessage{Role: m.Role, Content: m.Content, Thinking: m.Thinking, ToolCalls: calls,
			ToolName: m.ToolName, ToolCallID: m.ToolCallID})
	}
	return strings.Join(system, "\n\n"), out
}

func render(t *template.Template, c renderCase) (s string, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	system, messages := collate(c.Messages)
	var tools templateTools
	if c.Tools != nil {
		tools = templateTools(c.Tools)
	}
	var b bytes.Buffer
	err = t.Execute(&b, map[string]any{"System": system, "Messages": messages, "Tools": tools, "Response": "",
		"Think": false, "ThinkLevel": "", "IsThinkSet": false})
	return b.String(), err
}

// toolTag: how Ollama's tools package reads a TEMPLATE's tool-call tag — the first non-blank text inside the
// first `if` whose pipeline names .ToolCalls, cut before any "{" and trimmed; "{" when there is none.
func toolTag(t *template.Template) string {
	if t == nil || t.Tree == nil {
		return "{"
	}
	n := findToolCallIf(t.Tree.Root.Nodes)
	if n == nil {
		return "{"
	}
	tn := firstText(n.List.Nodes)
	if tn == nil {
		return "{"
	}
	tag, _, _ := strings.Cut(strings.ReplaceAll(string(tn.Text), "\r\n", "\n"), "{")
	if tag = strings.TrimSpace(tag); tag == "" {
		return "{"
	}
	return tag
}

func namesToolCalls(n *parse.IfNode) bool {
	for _, c := range n.Pipe.Cmds {
		for _, a := range c.Args {
			if f, ok := a.(*parse.FieldNode); ok {
				for _, id := range f.Ident {
					if id == "ToolCalls" {
						return true
					}
				}
			}
		}
	}
	return false
}

func findToolCallIf(nodes []parse.Node) *parse.IfNode {
	for _, node := range nodes {
		var lists []*parse.ListNode
		switch n := node.(type) {
		case *parse.IfNode:
			if namesToolCalls(n) {
				return n
			}
			lists = []*parse.ListNode{n.List, n.ElseList}
		case *parse.ListNode:
			lists = []*parse.ListNode{n}
		case *parse.RangeNode:
			lists = []*parse.ListNode{n.List, n.ElseList}
		case *parse.WithNode:
			lists = []*parse.ListNode{n.List, n.ElseList}
		}
		for _, l := range lists {
			if l != nil {
				if r := findToolCallIf(l.Nodes); r != nil {
					return r
				}
			}
		}
	}
	return nil
}

func firstText(nodes []parse.Node) *parse.TextNode {
	for _, node := range nodes {
		switch n := node.(type) {
		case *parse.TextNode:
			if len(bytes.TrimSpace(n.Text)) > 0 {
				return n
			}
		case *parse.ListNode:
			if t := firstText(n.Nodes); t != nil {
				return t
			}
		case *parse.IfNode, *parse.RangeNode, *parse.WithNode:
			var b *parse.BranchNode
			switch x := n.(type) {
			case *parse.IfNode:
				b = &x.BranchNode
			case *parse.RangeNode:
				b = &x.BranchNode
			case *parse.WithNode:
				b = &x.BranchNode
			}
			if t := firstText(b.List.Nodes); t != nil {
				return t
			}
			if b.ElseList != nil {
				if t := firstText(b.ElseList.Nodes); t != nil {
					return t
				}
			}
			return nil // text after a nested block is not the tag
		}
	}
	return nil
}

func main() {
	var in batch
	if err := json.NewDecoder(os.Stdin).Decode(&in); err != nil {
		fmt.Fprintln(os.Stderr, "input:", err)
		os.Exit(2)
	}
	parsed := make([]*template.Template, len(in.Templates))
	parseErr := make([]error, len(in.Templates))
	for i, src := range in.Templates {
		parsed[i], parseErr[i] = template.New("").Option("missingkey=zero").Funcs(funcs).Parse(src)
	}
	tags := make([]string, len(in.Templates))
	for i := range parsed {
		if parseErr[i] == nil {
			tags[i] = toolTag(parsed[i])
		}
	}
	out := make([]result, len(in.Cases))
	for i, c := range in.Cases {
		if c.Template < 0 || c.Template >= len(parsed) {
			out[i] = result{Error: "no such template"}
		} else if parseErr[c.Template] != nil {
			out[i] = result{Error: "parse: " + parseErr[c.Template].Error()}
		} else if s, err := render(parsed[c.Template], c); err != nil {
			out[i] = result{Out: s, Error: "exec: " + err.Error()}
		} else {
			out[i] = result{Out: s}
		}
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(output{Results: out, Tags: tags}); err != nil {
		fmt.Fprintln(os.Stderr, "output:", err)
		os.Exit(3)
	}
}
