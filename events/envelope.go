package events

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// ContentType is the AMQP content_type of every message: a CloudEvent in structured mode.
const ContentType = "application/cloudevents+json"

// SpecVersion is the CloudEvents version of the envelope.
const SpecVersion = "1.0"

// DataContentType is the media type of the envelope's data.
const DataContentType = "application/json"

// Decoding errors. Decode wraps one of them, so that a consumer can tell a message that can
// never be handled (and belongs in the dead-letter queue) from a transient failure.
var (
	// ErrMalformed: the body is not JSON, an attribute or field is missing, null, of the
	// wrong type or out of range, or data has a field the contract does not know.
	ErrMalformed = errors.New("malformed event")
	// ErrUnknownType: the envelope is well formed but its type is none of this package's.
	ErrUnknownType = errors.New("unknown event type")
)

// Envelope is a CloudEvents 1.0 message in structured JSON mode.
type Envelope struct {
	SpecVersion     string          `json:"specversion"`
	ID              string          `json:"id"`
	Source          string          `json:"source"`
	Type            string          `json:"type"`
	Time            time.Time       `json:"time"`
	DataContentType string          `json:"datacontenttype"`
	Data            json.RawMessage `json:"data"`
}

// NewEnvelope wraps e with its id (a UUID string), source (SourceAPI, ...) and time. It fails
// when e breaks the contract, so an invalid event is never written.
func NewEnvelope(id, source string, at time.Time, e Event) (Envelope, error) {
	if e == nil {
		return Envelope{}, errors.New("new envelope: nil event")
	}
	if err := e.validate(); err != nil {
		return Envelope{}, fmt.Errorf("new envelope for %s: %w", e.Name(), err)
	}
	env, err := NewEnvelopeWithoutData(id, source, e.Type(), at)
	if err != nil {
		return Envelope{}, err
	}
	if env.Data, err = json.Marshal(e); err != nil {
		return Envelope{}, fmt.Errorf("encode %s: %w", e.Name(), err)
	}
	return env, nil
}

// NewEnvelopeWithoutData returns the envelope of an event of eventType whose data is an
// empty object, for a writer that builds the data in SQL from the rows it writes. Nothing
// here checks that data; the writer's tests decode what it stored.
func NewEnvelopeWithoutData(id, source, eventType string, at time.Time) (Envelope, error) {
	if id == "" || source == "" || eventType == "" || at.IsZero() {
		return Envelope{}, fmt.Errorf("new envelope for %s: id, source, type and time are required", eventType)
	}
	return Envelope{
		SpecVersion:     SpecVersion,
		ID:              id,
		Source:          source,
		Type:            eventType,
		Time:            at.UTC(),
		DataContentType: DataContentType,
		Data:            json.RawMessage(`{}`),
	}, nil
}

// Encode returns the message body: the envelope as JSON.
func (env Envelope) Encode() ([]byte, error) {
	b, err := json.Marshal(env)
	if err != nil {
		return nil, fmt.Errorf("encode envelope: %w", err)
	}
	return b, nil
}

// envelopeAttributes are the attributes every envelope must carry. CloudEvents extension
// attributes beyond them are allowed and ignored.
var envelopeAttributes = []string{"specversion", "id", "source", "type", "time", "datacontenttype", "data"}

// Decode parses a message body strictly: every envelope attribute must be present, the
// specversion 1.0, the datacontenttype application/json, the type one of this package's, and
// data must hold exactly the fields of that type's payload, all present and valid. The event
// is returned as a value (OrderCreated, not *OrderCreated). Errors wrap
// ErrMalformed or ErrUnknownType.
func Decode(body []byte) (Envelope, Event, error) {
	var attrs map[string]json.RawMessage
	if err := json.Unmarshal(body, &attrs); err != nil {
		return Envelope{}, nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if err := requireKeys(attrs, envelopeAttributes); err != nil {
		return Envelope{}, nil, fmt.Errorf("%w: envelope: %v", ErrMalformed, err)
	}
	var env Envelope
	if err := json.Unmarshal(body, &env); err != nil {
		return Envelope{}, nil, fmt.Errorf("%w: envelope: %v", ErrMalformed, err)
	}
	switch {
	case env.SpecVersion != SpecVersion:
		return env, nil, fmt.Errorf("%w: specversion %q, want %q", ErrMalformed, env.SpecVersion, SpecVersion)
	case env.ID == "" || env.Source == "" || env.Type == "":
		return env, nil, fmt.Errorf("%w: empty id, source or type", ErrMalformed)
	case env.DataContentType != DataContentType:
		return env, nil, fmt.Errorf("%w: datacontenttype %q, want %q", ErrMalformed, env.DataContentType, DataContentType)
	case env.Time.UTC().Year() < 0 || env.Time.UTC().Year() > 9999:
		// An envelope carries its time in UTC, which JSON can only write for these years.
		return env, nil, fmt.Errorf("%w: time %s is out of range", ErrMalformed, env.Time.Format(time.RFC3339))
	}
	decode, ok := decoders[env.Type]
	if !ok {
		return env, nil, fmt.Errorf("%w: %q", ErrUnknownType, env.Type)
	}
	ev, err := decode(env.Data)
	if err != nil {
		return env, nil, fmt.Errorf("%w: %s data: %v", ErrMalformed, env.Type, err)
	}
	return env, ev, nil
}

// decoders are the event types that Decode knows, each with the decoder of its data. The
// tests require, for each, a sample and its definitions in schema.json.
var decoders = map[string]func(json.RawMessage) (Event, error){
	TypeOrderCreated:   decodeData[OrderCreated],
	TypeOrderCompleted: decodeData[OrderCompleted],
	TypeOrderExpired:   decodeData[OrderExpired],
}

// decodeData decodes one payload, rejecting unknown and missing fields (also in items).
func decodeData[T Event](data json.RawMessage) (Event, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(data, &fields); err != nil {
		return nil, err
	}
	var e T
	if err := requireKeys(fields, jsonFields(e)); err != nil {
		return nil, err
	}
	if items, ok := fields["items"]; ok {
		var list []map[string]json.RawMessage
		if err := json.Unmarshal(items, &list); err != nil {
			return nil, fmt.Errorf("items: %v", err)
		}
		for i, it := range list {
			if err := requireKeys(it, jsonFields(Item{})); err != nil {
				return nil, fmt.Errorf("items[%d]: %v", i, err)
			}
		}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		return nil, err
	}
	if err := e.validate(); err != nil {
		return nil, err
	}
	return e, nil
}

// requireKeys reports the first of keys that is absent from m or null.
func requireKeys(m map[string]json.RawMessage, keys []string) error {
	for _, k := range keys {
		v, ok := m[k]
		if !ok {
			return fmt.Errorf("%s is missing", k)
		}
		if string(bytes.TrimSpace(v)) == "null" {
			return fmt.Errorf("%s is null", k)
		}
	}
	return nil
}
