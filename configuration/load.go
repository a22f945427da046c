package configuration

import (
	"bytes"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
)

// Load reads dir/instance.json and dir/secrets.json on top of Defaults(), applies the
// ORDERFLOW_* environment variables of the process and validates the result. A variable
// that names no key is reported together with the files' and the values' errors.
func Load(dir string) (*Config, error) {
	unknown := unknownVariables(os.Environ())
	cfg, err := LoadWithEnv(dir, os.LookupEnv)
	if err := errors.Join(unknown, err); err != nil {
		return nil, err
	}
	return cfg, nil
}

// LoadWithEnv is Load with the environment read through lookup, which has the
// signature of os.LookupEnv.
//
// Both files are required and decoded strictly: a key that the Config has no place for,
// or that belongs in the other file, is an error, as are duplicate keys, null values and
// anything after the top-level object. Every environment variable that lookup reports
// as set, even to the empty string, overrides its key. The admin e-mail is lower-cased,
// then the result is validated; bad variables and invalid values are reported together,
// one line each, with the file and line or the variable that set the value: an override
// hides the file's value, so the file alone may not show what is wrong.
func LoadWithEnv(dir string, lookup func(string) (string, bool)) (*Config, error) {
	cfg := Defaults()
	setBy := make(map[string]string)
	for _, file := range []string{InstanceFile, SecretsFile} {
		if err := decodeFile(filepath.Join(dir, file), file, &cfg, setBy); err != nil {
			return nil, fmt.Errorf("configuration: %w", err)
		}
	}
	// A variable that does not parse leaves its key as the files have it, so validating
	// anyway reports every problem in one go.
	envErr := applyEnv(&cfg, lookup, setBy)
	if printableASCII(cfg.Admin.Email) { // else refused as it was set: Unicode lower-casing makes a Kelvin sign a "k"
		cfg.Admin.Email = strings.ToLower(cfg.Admin.Email)
	}
	source := func(key string) string {
		if s, ok := setBy[key]; ok {
			return s
		}
		return fmt.Sprintf("set neither in %s nor by %s", filepath.Join(dir, fileOf(key)), envName(key))
	}
	if err := errors.Join(envErr, cfg.validate(source)); err != nil {
		return nil, err
	}
	return &cfg, nil
}

// readError is the error of a configuration file that could not be read. One that the
// process may not read names the user it runs as: a file made private on the host keeps its
// owner and mode when mounted into a container, whose process runs as another user.
func readError(path string, err error) error {
	if errors.Is(err, fs.ErrPermission) {
		return fmt.Errorf("read %s: %w (this process runs as uid %d, which must be able to read it)", path, err, os.Getuid())
	}
	return fmt.Errorf("read %s: %w", path, err)
}

// decodeFile decodes the file at path, which must hold only the keys of file (InstanceFile
// or SecretsFile), into cfg. When setBy is not nil, it records there, for each key the file
// sets, the file and the line.
func decodeFile(path, file string, cfg *Config, setBy map[string]string) error {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%s: file not found (both %s and %s are required, in the directory that --config or %sCONFIG_DIR names)", path, InstanceFile, SecretsFile, EnvPrefix)
	}
	if err != nil {
		return readError(path, err)
	}
	// Some editors start a UTF-8 file with a byte-order mark, which JSON does not allow.
	data = bytes.TrimPrefix(data, []byte("\ufeff"))
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	d := &fileDecoder{path: path, file: file, data: data, dec: dec, setBy: setBy}
	if err := d.object(reflect.ValueOf(cfg).Elem(), ""); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("%s: unexpected data after the top-level object (line %d)", path, d.line(dec.InputOffset()))
	}
	return nil
}

// fileDecoder walks one configuration file token by token, so that every error can name
// the key path and the line it concerns.
type fileDecoder struct {
	path string // file path, as errors name it
	file string // InstanceFile or SecretsFile
	data []byte
	dec  *json.Decoder
	// setBy, when not nil, receives "set in <path>, line <n>" for every key decoded.
	setBy map[string]string
}

// position describes a byte offset of the file as a line and column.
func (d *fileDecoder) position(offset int64) string {
	offset = min(max(offset, 0), int64(len(d.data)))
	before := d.data[:offset]
	line := bytes.Count(before, []byte("\n")) + 1
	col := len(before) - bytes.LastIndexByte(before, '\n')
	return fmt.Sprintf("line %d, column %d", line, col)
}

// line returns the line of a byte offset of the file, for errors about a key or value
// (the offset is the end of the token, which is on the token's line).
func (d *fileDecoder) line(offset int64) int {
	offset = min(max(offset, 0), int64(len(d.data)))
	return bytes.Count(d.data[:offset], []byte("\n")) + 1
}

// token reads the next token, turning a syntax error into one that names the file and
// the position.
func (d *fileDecoder) token() (json.Token, error) {
	tok, err := d.dec.Token()
	if err == nil {
		return tok, nil
	}
	var syn *json.SyntaxError
	switch {
	case errors.As(err, &syn):
		return nil, fmt.Errorf("%s: malformed JSON at %s: %s", d.path, d.position(syn.Offset), syn.Error())
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		if len(bytes.TrimSpace(d.data)) == 0 {
			return nil, fmt.Errorf("%s: malformed JSON: the file is empty, want an object", d.path)
		}
		return nil, fmt.Errorf("%s: malformed JSON at %s: unexpected end of file", d.path, d.position(int64(len(d.data))))
	default:
		return nil, fmt.Errorf("%s: malformed JSON at %s: %w", d.path, d.position(d.dec.InputOffset()), err)
	}
}

// object decodes a JSON object into the section v, whose key path is prefix ("" for the
// whole Config).
func (d *fileDecoder) object(v reflect.Value, prefix string) error {
	tok, err := d.token()
	if err != nil {
		return err
	}
	if tok != json.Delim('{') {
		what := "the top level"
		if prefix != "" {
			what = strconv.Quote(prefix)
		}
		return fmt.Errorf("%s: %s must be a JSON object, got %s (line %d)", d.path, what, describeToken(tok), d.line(d.dec.InputOffset()))
	}
	seen := make(map[string]bool)
	for d.dec.More() {
		tok, err := d.token()
		if err != nil {
			return err
		}
		name := tok.(string) // inside an object the decoder yields only string keys here
		path := name
		if prefix != "" {
			path = prefix + "." + name
		}
		at := d.line(d.dec.InputOffset())
		if seen[name] {
			return fmt.Errorf("%s: duplicate key %q (line %d)", d.path, path, at)
		}
		seen[name] = true
		field, ok := fieldByJSONName(v.Type(), name)
		if !ok {
			return fmt.Errorf("%s: unknown key %q (line %d)", d.path, path, at)
		}
		fv := v.FieldByIndex(field.Index)
		if isSection(field.Type) {
			if err := d.object(fv, path); err != nil {
				return err
			}
			continue
		}
		if want := fileOf(path); want != d.file {
			return fmt.Errorf("%s: key %q belongs in %s, not %s (line %d)", d.path, path, want, d.file, at)
		}
		if err := d.value(fv, path); err != nil {
			return err
		}
	}
	_, err = d.token() // the closing '}'
	return err
}

// value decodes one scalar JSON value into the key field fv.
func (d *fileDecoder) value(fv reflect.Value, path string) error {
	tok, err := d.token()
	if err != nil {
		return err
	}
	at := d.line(d.dec.InputOffset())
	var text string
	switch t := tok.(type) {
	case string:
		if !wantsString(fv) {
			return fmt.Errorf("%s: %s: must be %s, got the string %q (line %d)", d.path, path, describeKind(fv), t, at)
		}
		text = t
	case json.Number:
		if wantsString(fv) || fv.Kind() == reflect.Bool {
			return fmt.Errorf("%s: %s: must be %s, got %s (line %d)", d.path, path, describeKind(fv), shown(path, tok), at)
		}
		text = t.String()
	case bool:
		if fv.Kind() != reflect.Bool {
			return fmt.Errorf("%s: %s: must be %s, got %s (line %d)", d.path, path, describeKind(fv), shown(path, tok), at)
		}
		text = strconv.FormatBool(t)
	default:
		return fmt.Errorf("%s: %s: must be %s, got %s (line %d)", d.path, path, describeKind(fv), describeToken(tok), at)
	}
	if err := setValue(fv, text); err != nil {
		return fmt.Errorf("%s: %s: %w (line %d)", d.path, path, err, at)
	}
	if d.setBy != nil {
		d.setBy[path] = fmt.Sprintf("set in %s, line %d", d.path, at)
	}
	return nil
}

// fieldByJSONName finds the field of struct type t whose JSON key is exactly name.
// Unlike encoding/json, the match is case-sensitive, so each key has one spelling.
func fieldByJSONName(t reflect.Type, name string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		f := t.Field(i)
		if jsonName(f) == name {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

// shown is what an error shows of tok, a value of the wrong type for the key at path: the
// value, or only its kind for a key whose values never appear in a message (a number
// could be a password written without quotes).
func shown(path string, tok json.Token) string {
	if !sensitiveKeys[path] {
		return describeToken(tok)
	}
	switch tok.(type) {
	case json.Number:
		return "a number"
	case bool:
		return "true or false"
	}
	return describeToken(tok)
}

// describeToken names a JSON token that has the wrong type for its key.
func describeToken(tok json.Token) string {
	switch t := tok.(type) {
	case nil:
		return "null"
	case json.Delim:
		if t == '[' {
			return "an array"
		}
		return "an object"
	case string:
		return fmt.Sprintf("the string %q", t)
	default:
		return fmt.Sprint(t)
	}
}

// wantsString reports whether the key field fv is written as a JSON string.
func wantsString(fv reflect.Value) bool {
	return fv.Kind() == reflect.String || fv.Addr().Type().Implements(textUnmarshaler)
}

// describeKind says what a value of the key field fv must look like.
func describeKind(fv reflect.Value) string {
	if fv.Addr().Type().Implements(textUnmarshaler) {
		if _, ok := fv.Interface().(Duration); ok {
			return `a duration string such as "5s" or "10m"`
		}
		return "a string"
	}
	switch fv.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Bool:
		return "true or false"
	}
	return fv.Type().String()
}

// setValue parses text, as a file or an environment variable gives it, into the key
// field fv.
func setValue(fv reflect.Value, text string) error {
	if u, ok := fv.Addr().Interface().(encoding.TextUnmarshaler); ok {
		return u.UnmarshalText([]byte(text))
	}
	switch fv.Kind() {
	case reflect.String:
		fv.SetString(text)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, err := strconv.ParseInt(text, 10, fv.Type().Bits())
		if err != nil {
			return fmt.Errorf("must be an integer, got %q", text)
		}
		fv.SetInt(n)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n, err := strconv.ParseUint(text, 10, fv.Type().Bits())
		if err != nil {
			return fmt.Errorf("must be an integer, got %q", text)
		}
		fv.SetUint(n)
	case reflect.Float32, reflect.Float64:
		f, err := strconv.ParseFloat(text, fv.Type().Bits())
		if err != nil {
			return fmt.Errorf("must be a number, got %q", text)
		}
		fv.SetFloat(f)
	case reflect.Bool:
		b, err := strconv.ParseBool(text)
		if err != nil {
			return fmt.Errorf("must be true or false, got %q", text)
		}
		fv.SetBool(b)
	default:
		return fmt.Errorf("unsupported key type %s", fv.Type())
	}
	return nil
}
