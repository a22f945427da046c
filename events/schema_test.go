package events

import (
	"bytes"
	"encoding/json"
	"os"
	"reflect"
	"slices"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// schemaDoc is the part of schema.json that the Go types must agree with.
type schemaDoc struct {
	Defs map[string]struct {
		Name                 string                     `json:"x-name"`
		Type                 string                     `json:"x-type"`
		RoutingKey           string                     `json:"x-routing-key"`
		Required             []string                   `json:"required"`
		Properties           map[string]json.RawMessage `json:"properties"`
		AdditionalProperties *bool                      `json:"additionalProperties"`
	} `json:"$defs"`
}

func readSchema(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile("schema.json")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func compile(t *testing.T, ref string) *jsonschema.Schema {
	t.Helper()
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(readSchema(t)))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	if err := c.AddResource("schema.json", doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile(ref)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func validate(t *testing.T, s *jsonschema.Schema, body []byte) error {
	t.Helper()
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(body))
	if err != nil {
		return err
	}
	return s.Validate(inst)
}

// TestSchemaMatchesTypes checks that every payload's properties and required list in
// schema.json are exactly the JSON fields of its Go type, and that the names, types and
// routing keys agree.
func TestSchemaMatchesTypes(t *testing.T) {
	t.Parallel()
	var doc schemaDoc
	if err := json.Unmarshal(readSchema(t), &doc); err != nil {
		t.Fatal(err)
	}
	types := map[string]any{"Item": Item{}, "Envelope": Envelope{}}
	for _, e := range samples() {
		types[e.Name()] = e
	}
	for name, v := range types {
		def, ok := doc.Defs[name]
		if !ok {
			t.Errorf("schema has no $defs/%s", name)
			continue
		}
		fields := jsonFields(v)
		props := make([]string, 0, len(def.Properties))
		for p := range def.Properties {
			props = append(props, p)
		}
		if !sameSet(props, fields) {
			t.Errorf("%s: schema properties %v, Go fields %v", name, props, fields)
		}
		if !sameSet(def.Required, fields) {
			t.Errorf("%s: schema required %v, Go fields %v", name, def.Required, fields)
		}
		if name != "Envelope" && (def.AdditionalProperties == nil || *def.AdditionalProperties) {
			t.Errorf("%s: additionalProperties must be false, as Decode rejects unknown fields", name)
		}
		if e, ok := v.(Event); ok {
			if def.Name != e.Name() || def.Type != e.Type() || def.RoutingKey != e.RoutingKey() {
				t.Errorf("%s: schema says %s %s %s, Go says %s %s %s", name, def.Name, def.Type, def.RoutingKey, e.Name(), e.Type(), e.RoutingKey())
			}
		}
	}
	if !sameSet(envelopeAttributes, jsonFields(Envelope{})) {
		t.Errorf("required envelope attributes %v, Envelope fields %v", envelopeAttributes, jsonFields(Envelope{}))
	}
}

// TestEveryTypeIsCovered checks that each event type Decode knows has a sample, for the
// tests that run on every sample, and a definition in schema.json: in the envelope's type
// enum, with an if/then for its data, and under $defs; and that schema.json names no other.
func TestEveryTypeIsCovered(t *testing.T) {
	t.Parallel()
	var doc struct {
		Defs map[string]struct {
			Type       string `json:"x-type"`
			Properties struct {
				Type struct {
					Enum []string `json:"enum"`
				} `json:"type"`
			} `json:"properties"`
			AllOf []struct {
				If struct {
					Properties struct {
						Type struct {
							Const string `json:"const"`
						} `json:"type"`
					} `json:"properties"`
				} `json:"if"`
			} `json:"allOf"`
		} `json:"$defs"`
	}
	if err := json.Unmarshal(readSchema(t), &doc); err != nil {
		t.Fatal(err)
	}
	env := doc.Defs["Envelope"]
	sampled := map[string]bool{}
	for _, e := range samples() {
		sampled[e.Type()] = true
	}
	defined := map[string]bool{}
	for _, d := range doc.Defs {
		if d.Type != "" {
			defined[d.Type] = true
		}
	}
	conditioned := map[string]bool{}
	for _, c := range env.AllOf {
		conditioned[c.If.Properties.Type.Const] = true
	}
	listed := map[string]bool{}
	for _, e := range All() {
		listed[e.Type()] = true
		if decoders[e.Type()] == nil {
			t.Errorf("%s: in All(), but Decode does not know it (events.decoders)", e.Type())
		}
	}
	for typ := range decoders {
		if !listed[typ] {
			t.Errorf("%s: not in All() (events.go), so no test checks that it is routed and handled", typ)
		}
		if !sampled[typ] {
			t.Errorf("%s: no sample in samples() (envelope_test.go)", typ)
		}
		if !defined[typ] {
			t.Errorf("%s: no $defs entry with this x-type in schema.json", typ)
		}
		if !slices.Contains(env.Properties.Type.Enum, typ) {
			t.Errorf("%s: not in the type enum of schema.json's Envelope", typ)
		}
		if !conditioned[typ] {
			t.Errorf("%s: no if/then for its data in the allOf of schema.json's Envelope", typ)
		}
	}
	for _, typ := range env.Properties.Type.Enum {
		if decoders[typ] == nil {
			t.Errorf("%s: in schema.json's type enum, but Decode does not know it (events.decoders)", typ)
		}
	}
	for typ := range defined {
		if decoders[typ] == nil {
			t.Errorf("%s: defined in schema.json, but Decode does not know it (events.decoders)", typ)
		}
	}
}

// TestSchemaAcceptsEncodings validates what the Go code writes against the schema.
func TestSchemaAcceptsEncodings(t *testing.T) {
	t.Parallel()
	s := compile(t, "schema.json")
	for _, e := range samples() {
		body := encode(t, e)
		if err := validate(t, s, body); err != nil {
			t.Errorf("%s: %s: %v", e.Name(), body, err)
		}
		data, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		if err := validate(t, compile(t, "schema.json#/$defs/"+e.Name()), data); err != nil {
			t.Errorf("%s data: %v", e.Name(), err)
		}
	}
}

// TestSchemaRejectsWhatDecodeRejects checks that the schema and Decode agree on every
// invalid body of the strict-decoding test.
func TestSchemaRejectsWhatDecodeRejects(t *testing.T) {
	t.Parallel()
	s := compile(t, "schema.json")
	for _, m := range mutations(t) {
		if err := validate(t, s, []byte(m.body)); err == nil {
			t.Errorf("%s: schema accepts %s", m.name, m.body)
		}
	}
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return reflect.DeepEqual(a, b)
}
