// Package config is how every raftq daemon reads its own settings: one
// Viper instance per process, layered defaults < YAML file (--config) <
// environment (RAFTQ_…) < command-line flags.
//
// A daemon declares its keys once (name, flag, kind, default, usage); the
// package derives the flag set, the environment variable names and the
// checks from that list, so the three stay in agreement. Every problem is
// reported as an *Error naming the key, the flag and the variable it can be
// set with, and the reason; a daemon prints them and exits with status 2
// before starting anything.
//
// Secrets (passwords, DSNs) are marked on their key and never printed in
// clear by Print.
package config

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cast"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"
	yaml "go.yaml.in/yaml/v3"
)

// EnvPrefix starts every environment variable a raftq daemon reads:
// key "grpc.addr" is RAFTQ_GRPC_ADDR.
const EnvPrefix = "RAFTQ"

// ConfigFlag is the flag (and RAFTQ_CONFIG the variable) naming the YAML file.
const ConfigFlag = "config"

// Kind is the type of a key's value; it decides how flags, environment
// strings and YAML values are parsed.
type Kind int

// Kinds of values.
const (
	String Kind = iota
	Int
	Float
	Bool
	Duration
	// List is a list of strings: a YAML sequence, or a comma-separated
	// string in YAML, the environment or a flag.
	List
)

// Key is one setting a daemon reads.
type Key struct {
	// Name is the dotted key, lower case ("grpc.addr"); it is the YAML
	// path and, upper-cased with dots as underscores, the environment
	// variable after RAFTQ_.
	Name string
	// Flag is the long flag name ("grpc-addr"); empty for keys that only
	// come from the file or the environment.
	Flag string
	Kind Kind
	// Default is the value when nothing sets the key; nil means the zero
	// value of Kind.
	Default any
	Usage   string
	// Required keys must be set to a non-empty value.
	Required bool
	// Secret keys are printed as "REDACTED" when set.
	Secret bool
	// Redact, when set, is applied to the value before printing (e.g. to
	// hide only the password inside a DSN).
	Redact func(string) string
	// Check, when set, validates the parsed value (string, int, float64,
	// bool, time.Duration or []string by Kind); its error becomes the
	// reason of an *Error for this key.
	Check func(v any) error
}

// Env is the environment variable that sets the key.
func (k Key) Env() string {
	return EnvPrefix + "_" + strings.ToUpper(strings.NewReplacer(".", "_", "-", "_").Replace(k.Name))
}

// Error is one invalid setting: which key, how it can be set, and why it is
// wrong.
type Error struct {
	Key    string
	Flag   string
	Env    string
	Reason string
	// Cause is the underlying error, when there is one (pflag.ErrHelp for
	// --help, so callers can tell a help request from a bad setting).
	Cause error
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Cause }

func (e *Error) Error() string {
	where := []string{}
	if e.Flag != "" {
		where = append(where, "flag --"+e.Flag)
	}
	if e.Env != "" {
		where = append(where, "env "+e.Env)
	}
	if len(where) == 0 {
		return fmt.Sprintf("%s: %s", e.Key, e.Reason)
	}
	return fmt.Sprintf("%s (%s): %s", e.Key, strings.Join(where, ", "), e.Reason)
}

// Loader reads one daemon's configuration. Create it with New, add its
// flags to the command line with FlagSet, then call Load.
type Loader struct {
	daemon string
	keys   []Key
	byName map[string]*Key
	fs     *pflag.FlagSet
	config *string
}

// New declares a daemon's keys. It panics on a malformed declaration
// (a programming error, not a user's).
func New(daemon string, keys []Key) *Loader {
	l := &Loader{daemon: daemon, keys: keys, byName: map[string]*Key{}}
	l.fs = pflag.NewFlagSet(daemon, pflag.ContinueOnError)
	l.fs.SortFlags = false
	l.config = l.fs.String(ConfigFlag, "", "YAML configuration file (env "+EnvPrefix+"_CONFIG); flags and RAFTQ_* variables override it")
	for i := range l.keys {
		k := &l.keys[i]
		if k.Name != strings.ToLower(k.Name) || k.Name == "" {
			panic("config: key " + strconv.Quote(k.Name) + " must be lower case")
		}
		if _, dup := l.byName[k.Name]; dup {
			panic("config: key " + k.Name + " declared twice")
		}
		l.byName[k.Name] = k
		if k.Flag == "" {
			continue
		}
		usage := k.Usage + " (" + k.Name + ", env " + k.Env() + ")"
		switch k.Kind {
		case String:
			l.fs.String(k.Flag, asString(k.Default), usage)
		case Int:
			l.fs.Int(k.Flag, cast.ToInt(k.Default), usage)
		case Float:
			l.fs.Float64(k.Flag, cast.ToFloat64(k.Default), usage)
		case Bool:
			l.fs.Bool(k.Flag, cast.ToBool(k.Default), usage)
		case Duration:
			l.fs.Duration(k.Flag, cast.ToDuration(k.Default), usage)
		case List:
			// A plain string flag: "a,b,c". pflag's StringSlice would
			// make "--join a --join b" work too, but viper flattens it
			// through CSV anyway.
			l.fs.String(k.Flag, strings.Join(cast.ToStringSlice(k.Default), ","), usage)
		default:
			panic("config: key " + k.Name + " has an unknown kind")
		}
	}
	return l
}

// FlagSet is the daemon's flags: one per key that has a Flag, and --config.
// Callers may add their own flags to it before Load.
func (l *Loader) FlagSet() *pflag.FlagSet { return l.fs }

// Keys returns the declared keys in declaration order.
func (l *Loader) Keys() []Key { return append([]Key(nil), l.keys...) }

// Errorf builds an *Error for key (which must be declared) so daemon-level
// checks that involve several keys name them the same way.
func (l *Loader) Errorf(key, format string, args ...any) *Error {
	e := &Error{Key: key, Reason: fmt.Sprintf(format, args...)}
	if k, ok := l.byName[key]; ok {
		e.Flag = k.Flag
		e.Env = k.Env()
	}
	return e
}

// Source says where a key's effective value came from.
type Source string

// Sources, lowest precedence first.
const (
	FromDefault Source = "default"
	FromFile    Source = "file"
	FromEnv     Source = "env"
	FromFlag    Source = "flag"
)

// Values is a loaded, checked configuration.
type Values struct {
	loader *Loader
	vals   map[string]any
	src    map[string]Source
	// File is the configuration file that was read ("" when none).
	File string
}

// Load parses args into the flag set, reads the YAML file named by
// --config (or RAFTQ_CONFIG), the RAFTQ_* environment, and returns every
// key's value. All problems are returned together, joined; each is an
// *Error. Unknown keys in the file are errors (a typo must not be
// silently ignored).
func (l *Loader) Load(args []string) (*Values, error) {
	if err := l.fs.Parse(args); err != nil {
		return nil, &Error{Key: "flags", Reason: err.Error(), Cause: err}
	}
	return l.load()
}

func (l *Loader) load() (*Values, error) {
	// One Viper instance holds every layer; its precedence is ours:
	// flags (only when given) > environment > file > defaults.
	v := viper.New()
	v.SetEnvPrefix(EnvPrefix)
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_", "-", "_"))
	for _, k := range l.keys {
		if k.Default != nil {
			v.SetDefault(k.Name, k.Default)
		}
		// Bound one by one rather than AutomaticEnv: only declared
		// variables are read.
		if err := v.BindEnv(k.Name); err != nil {
			return nil, err
		}
		if k.Flag != "" {
			if err := v.BindPFlag(k.Name, l.fs.Lookup(k.Flag)); err != nil {
				return nil, err
			}
		}
	}
	vals := &Values{loader: l, vals: map[string]any{}, src: map[string]Source{}}
	var errs []error

	file := *l.config
	if file == "" {
		file = os.Getenv(EnvPrefix + "_CONFIG")
	}
	inFile := map[string]bool{}
	if file != "" {
		v.SetConfigFile(file)
		if ext := strings.TrimPrefix(filepath.Ext(file), "."); ext != "yaml" && ext != "yml" {
			v.SetConfigType("yaml")
		}
		if err := v.ReadInConfig(); err != nil {
			return nil, &Error{Key: ConfigFlag, Flag: ConfigFlag, Env: EnvPrefix + "_CONFIG", Reason: fmt.Sprintf("read %s: %v", file, err)}
		}
		// A second reader of the file alone finds keys nobody declared:
		// a typo must not be silently ignored.
		fv := viper.New()
		fv.SetConfigFile(file)
		fv.SetConfigType("yaml")
		if err := fv.ReadInConfig(); err != nil {
			return nil, &Error{Key: ConfigFlag, Flag: ConfigFlag, Env: EnvPrefix + "_CONFIG", Reason: fmt.Sprintf("read %s: %v", file, err)}
		}
		for _, key := range fv.AllKeys() {
			if _, ok := l.byName[key]; !ok {
				errs = append(errs, &Error{Key: key, Reason: fmt.Sprintf("unknown key in %s", file)})
				continue
			}
			inFile[key] = true
		}
		vals.File = file
	}
	for _, k := range l.keys {
		switch {
		case k.Flag != "" && l.fs.Lookup(k.Flag).Changed:
			vals.src[k.Name] = FromFlag
		case os.Getenv(k.Env()) != "":
			vals.src[k.Name] = FromEnv
		case inFile[k.Name]:
			vals.src[k.Name] = FromFile
		default:
			vals.src[k.Name] = FromDefault
		}
	}
	for i := range l.keys {
		k := &l.keys[i]
		val, err := parse(k.Kind, v.Get(k.Name))
		if err != nil {
			errs = append(errs, l.keyErr(k, vals.src[k.Name], err.Error()))
			continue
		}
		if k.Required && isEmpty(val) {
			errs = append(errs, l.keyErr(k, "", "required"))
			continue
		}
		if k.Check != nil && !(isEmpty(val) && !k.Required) {
			if err := k.Check(val); err != nil {
				errs = append(errs, l.keyErr(k, vals.src[k.Name], err.Error()))
				continue
			}
		}
		vals.vals[k.Name] = val
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return vals, nil
}

func (l *Loader) keyErr(k *Key, src Source, reason string) *Error {
	e := l.Errorf(k.Name, "%s", reason)
	if src != "" && src != FromDefault {
		e.Reason += " (set by " + string(src) + ")"
	}
	return e
}

func asString(v any) string {
	if v == nil {
		return ""
	}
	return cast.ToString(v)
}

func isEmpty(v any) bool {
	switch x := v.(type) {
	case string:
		return x == ""
	case []string:
		return len(x) == 0
	}
	return false
}

// parse turns a raw value (YAML-typed, or a string from a flag or the
// environment) into the key's kind, refusing what does not fit.
func parse(kind Kind, raw any) (any, error) {
	switch kind {
	case String:
		if raw == nil {
			return "", nil
		}
		switch raw.(type) {
		case map[string]any, []any:
			return nil, fmt.Errorf("want a string, got %T", raw)
		}
		return cast.ToStringE(raw)
	case Int:
		if raw == nil {
			return 0, nil
		}
		if s, ok := raw.(string); ok {
			n, err := strconv.Atoi(strings.TrimSpace(s))
			if err != nil {
				return nil, fmt.Errorf("%q is not an integer", s)
			}
			return n, nil
		}
		if f, ok := raw.(float64); ok && f != float64(int(f)) {
			return nil, fmt.Errorf("%v is not an integer", f)
		}
		n, err := cast.ToIntE(raw)
		if err != nil {
			return nil, fmt.Errorf("%v is not an integer", raw)
		}
		return n, nil
	case Float:
		if raw == nil {
			return 0.0, nil
		}
		f, err := cast.ToFloat64E(raw)
		if err != nil {
			return nil, fmt.Errorf("%v is not a number", raw)
		}
		return f, nil
	case Bool:
		if raw == nil {
			return false, nil
		}
		b, err := cast.ToBoolE(raw)
		if err != nil {
			return nil, fmt.Errorf("%v is not true or false", raw)
		}
		return b, nil
	case Duration:
		if raw == nil {
			return time.Duration(0), nil
		}
		switch x := raw.(type) {
		case time.Duration:
			return x, nil
		case string:
			s := strings.TrimSpace(x)
			if s == "0" {
				return time.Duration(0), nil
			}
			d, err := time.ParseDuration(s)
			if err != nil {
				return nil, fmt.Errorf("%q is not a duration (like 250ms, 30s, 5m)", x)
			}
			return d, nil
		case int:
			if x == 0 {
				return time.Duration(0), nil
			}
		}
		return nil, fmt.Errorf("%v is not a duration (like 250ms, 30s, 5m); a bare number needs a unit", raw)
	case List:
		switch x := raw.(type) {
		case nil:
			return []string(nil), nil
		case string:
			return splitList(x), nil
		case []string:
			return splitList(strings.Join(x, ",")), nil
		case []any:
			var out []string
			for _, e := range x {
				s, err := cast.ToStringE(e)
				if err != nil {
					return nil, fmt.Errorf("list item %v is not a string", e)
				}
				out = append(out, splitList(s)...)
			}
			return out, nil
		}
		return nil, fmt.Errorf("want a list, got %T", raw)
	}
	return nil, fmt.Errorf("unknown kind %d", kind)
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func (vs *Values) get(key string, kind Kind) any {
	k, ok := vs.loader.byName[key]
	if !ok || k.Kind != kind {
		panic("config: key " + key + " is not declared with that kind")
	}
	return vs.vals[key]
}

// String returns a String key's value.
func (vs *Values) String(key string) string { return vs.get(key, String).(string) }

// Int returns an Int key's value.
func (vs *Values) Int(key string) int { return vs.get(key, Int).(int) }

// Float returns a Float key's value.
func (vs *Values) Float(key string) float64 { return vs.get(key, Float).(float64) }

// Bool returns a Bool key's value.
func (vs *Values) Bool(key string) bool { return vs.get(key, Bool).(bool) }

// Duration returns a Duration key's value.
func (vs *Values) Duration(key string) time.Duration {
	return vs.get(key, Duration).(time.Duration)
}

// List returns a List key's value.
func (vs *Values) List(key string) []string {
	return append([]string(nil), vs.get(key, List).([]string)...)
}

// Source says where key's value came from.
func (vs *Values) Source(key string) Source { return vs.src[key] }

// Redacted is what Print shows instead of a secret.
const Redacted = "REDACTED"

// display returns the printable form of key's value, secrets hidden.
func (vs *Values) display(k *Key) any {
	v := vs.vals[k.Name]
	switch x := v.(type) {
	case string:
		if k.Secret && x != "" {
			return Redacted
		}
		if k.Redact != nil {
			return k.Redact(x)
		}
		return x
	case time.Duration:
		return x.String()
	case []string:
		if k.Secret && len(x) > 0 {
			return Redacted
		}
		if x == nil {
			return []string{}
		}
		return x
	}
	return v
}

// Print writes the effective configuration as YAML that Load would accept
// (secrets replaced by REDACTED), each value commented with where it came
// from.
func (vs *Values) Print(w io.Writer) error {
	root := &yaml.Node{Kind: yaml.MappingNode}
	keys := append([]Key(nil), vs.loader.keys...)
	sort.SliceStable(keys, func(i, j int) bool { return keys[i].Name < keys[j].Name })
	for i := range keys {
		k := &keys[i]
		parent := root
		parts := strings.Split(k.Name, ".")
		for _, p := range parts[:len(parts)-1] {
			parent = child(parent, p)
		}
		var val yaml.Node
		if err := val.Encode(vs.display(k)); err != nil {
			return err
		}
		if val.Kind == yaml.SequenceNode {
			val.Style = yaml.FlowStyle
		}
		comment := string(vs.src[k.Name])
		switch vs.src[k.Name] {
		case FromEnv:
			comment += " " + k.Env()
		case FromFlag:
			comment += " --" + k.Flag
		case FromFile:
			comment += " " + vs.File
		}
		val.LineComment = comment
		parent.Content = append(parent.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: parts[len(parts)-1]}, &val)
	}
	fmt.Fprintf(w, "# %s effective configuration: defaults < --config file < %s_* environment < flags\n", vs.loader.daemon, EnvPrefix)
	enc := yaml.NewEncoder(w)
	enc.SetIndent(2)
	if err := enc.Encode(root); err != nil {
		return err
	}
	return enc.Close()
}

// child returns (creating it) the mapping under name in a mapping node.
func child(m *yaml.Node, name string) *yaml.Node {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == name {
			return m.Content[i+1]
		}
	}
	c := &yaml.Node{Kind: yaml.MappingNode}
	m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: name}, c)
	return c
}

// RedactDSN hides the password in a PostgreSQL DSN, both in key=value
// form ("password=secret") and in URL form ("postgres://u:secret@h/db").
func RedactDSN(dsn string) string {
	if i := strings.Index(dsn, "://"); i >= 0 {
		rest := dsn[i+3:]
		if at := strings.LastIndex(rest, "@"); at >= 0 {
			cred := rest[:at]
			if c := strings.Index(cred, ":"); c >= 0 {
				return dsn[:i+3] + cred[:c+1] + Redacted + rest[at:]
			}
		}
		return dsn
	}
	fields := strings.Fields(dsn)
	for i, f := range fields {
		if k, _, ok := strings.Cut(f, "="); ok && strings.EqualFold(k, "password") {
			fields[i] = k + "=" + Redacted
		}
	}
	return strings.Join(fields, " ")
}
