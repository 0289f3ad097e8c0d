package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// printer writes a command's result as a table (the default, for people)
// or as JSON (-o json, for scripts; the shapes are the admin HTTP API's).
type printer struct {
	w    io.Writer
	json bool
}

func (g *globals) printer(w io.Writer) (*printer, error) {
	switch g.output {
	case "", "table":
		return &printer{w: w}, nil
	case "json":
		return &printer{w: w, json: true}, nil
	}
	return nil, fmt.Errorf("--output %q: want table or json", g.output)
}

// print writes v as JSON, or header and rows as an aligned table.
func (p *printer) print(v any, header []string, rows [][]string) error {
	if p.json {
		enc := json.NewEncoder(p.w)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	tw := tabwriter.NewWriter(p.w, 0, 4, 2, ' ', 0)
	if header != nil {
		fmt.Fprintln(tw, strings.Join(header, "\t"))
	}
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}

// kv prints one object as KEY VALUE lines in table mode.
func (p *printer) kv(v any, pairs [][2]string) error {
	rows := make([][]string, len(pairs))
	for i, kv := range pairs {
		rows[i] = []string{kv[0], kv[1]}
	}
	return p.print(v, nil, rows)
}
