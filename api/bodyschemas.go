package api

import (
	"encoding/json"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/ogen-go/ogen"

	"orderflow"
	"orderflow/api/oas"
)

// bodySchemas are the schemas of the contract's request bodies, by operationId, and the
// components that their references name.
type bodySchemas struct {
	bodies     map[string]*ogen.Schema
	components map[string]*ogen.Schema
}

// contractBodies reads the request bodies' schemas from the contract the first time a body
// breaks one of them; a request whose body the contract accepts never does. A contract that
// does not parse, or has no components (its tests fail first), leaves them empty.
var contractBodies = sync.OnceValue(func() bodySchemas {
	spec, err := ogen.Parse(orderflow.OpenAPI)
	if err != nil || spec.Components == nil {
		return bodySchemas{}
	}
	c := bodySchemas{bodies: map[string]*ogen.Schema{}, components: spec.Components.Schemas}
	for _, item := range spec.Paths {
		for _, op := range []*ogen.Operation{item.Get, item.Put, item.Post, item.Delete, item.Patch} {
			if op != nil && op.RequestBody != nil {
				c.bodies[op.OperationID] = op.RequestBody.Content["application/json"].Schema
			}
		}
	}
	return c
})

// expectedType says, in the contract's words, what the contract expects of the value at path
// (a JSON path from the body, "items[1].quantity") in the request body of the operation op,
// or returns "" when the contract does not say.
func expectedType(op, path string) string {
	c := contractBodies()
	return typeWords(c.schemaAt(c.bodies[op], path))
}

// schemaAt returns the schema of the value at path in a body of schema s, or nil when there
// is none.
func (c bodySchemas) schemaAt(s *ogen.Schema, path string) *ogen.Schema {
	_, at := c.walk(s, path)
	return at
}

// cutStep splits the first step off path, a JSON path from a body ("items[1].quantity"): the
// name of an object's member, or, with index set, the index of an array's element. ok is
// false when path does not parse.
func cutStep(path string) (step string, index bool, rest string, ok bool) {
	if after, found := strings.CutPrefix(path, "["); found {
		step, rest, ok = strings.Cut(after, "]")
		return step, true, rest, ok
	}
	path = strings.TrimPrefix(path, ".")
	end := strings.IndexAny(path, ".[")
	if end < 0 {
		end = len(path)
	}
	return path[:end], false, path[end:], true
}

// sortAsContract sorts fields, errors about the values of a body of the operation op, in the
// order of the contract: an object's members in the order of its schema's properties, an
// array's elements by index, a value before the values inside it. A field that the contract
// does not have comes after the others of its object, in its place among them.
func sortAsContract(op string, fields []oas.FieldError) {
	c := contractBodies()
	body := c.bodies[op]
	place := func(path string) []int {
		pos, _ := c.walk(body, path)
		return pos
	}
	slices.SortStableFunc(fields, func(a, b oas.FieldError) int {
		return slices.Compare(place(a.Field), place(b.Field))
	})
}

// walk follows path from a body of schema s. It returns the place of the value there: for
// each step of the path, the index of the member among its object schema's properties, or of
// the element in its array, and math.MaxInt for a step that the contract does not have, which
// ends it; and the schema of the value, nil where the contract has none.
func (c bodySchemas) walk(s *ogen.Schema, path string) (pos []int, at *ogen.Schema) {
	for path != "" {
		step, index, rest, ok := cutStep(path)
		if s = c.resolve(s); !ok || s == nil {
			return append(pos, math.MaxInt), nil
		}
		i := -1
		if index {
			if n, err := strconv.Atoi(step); err == nil && n >= 0 {
				i = n
			}
			s = elementSchema(s, step)
		} else {
			i = propertyIndex(s, step)
			s = propertySchema(s, step)
		}
		if i < 0 {
			return append(pos, math.MaxInt), nil
		}
		pos, path = append(pos, i), rest
	}
	return pos, c.resolve(s)
}

// resolve follows s's references to the components, and returns nil for a reference that
// leads nowhere, or round in a circle.
func (c bodySchemas) resolve(s *ogen.Schema) *ogen.Schema {
	for range len(c.components) + 1 {
		if s == nil || s.Ref == "" {
			return s
		}
		name, ok := strings.CutPrefix(s.Ref, "#/components/schemas/")
		if !ok {
			return nil
		}
		s = c.components[name]
	}
	return nil
}

// propertySchema returns the schema of the object member name in s, or nil.
func propertySchema(s *ogen.Schema, name string) *ogen.Schema {
	if i := propertyIndex(s, name); i >= 0 {
		return s.Properties[i].Schema
	}
	return nil
}

// propertyIndex returns the index of the object member name among s's properties, or -1.
func propertyIndex(s *ogen.Schema, name string) int {
	return slices.IndexFunc(s.Properties, func(p ogen.Property) bool { return p.Name == name })
}

// elementSchema returns the schema of the array element at index in s, or nil.
func elementSchema(s *ogen.Schema, index string) *ogen.Schema {
	switch i, err := strconv.Atoi(index); {
	case s.Items == nil || err != nil:
		return nil
	case s.Items.Item != nil:
		return s.Items.Item
	case i >= 0 && i < len(s.Items.Items):
		return s.Items.Items[i]
	}
	return nil
}

// typeWords says what a value of schema s must be: one of its values, or of its type; or ""
// when s is nil or names no type.
func typeWords(s *ogen.Schema) string {
	if s == nil {
		return ""
	}
	if len(s.Enum) > 0 {
		values := make([]string, len(s.Enum))
		for i, raw := range s.Enum {
			// A string is said without its quotes, as the answer to any other string is.
			if err := json.Unmarshal(raw, &values[i]); err != nil {
				values[i] = string(raw)
			}
		}
		return mustBeOneOf(values)
	}
	switch s.Type {
	case "integer":
		return "must be an integer"
	case "number":
		return "must be a number"
	case "string":
		return "must be a string"
	case "boolean":
		return "must be true or false"
	case "array":
		return "must be an array"
	case "object":
		return "must be an object"
	}
	return ""
}
