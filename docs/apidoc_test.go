package docs_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/descriptorpb"
)

// The gRPC API reference, docs/api.md, is made from the comments in
// proto/: protoc reads the .proto files with their source info and this
// test renders services, methods, messages and enums as Markdown. It fails
// when docs/api.md differs from what the protos say (a proto comment
// changed without the doc); `make api-doc` writes it anew. Needs protoc
// (CI installs it; skipped without it).
func TestAPIDocIsCurrent(t *testing.T) {
	protoc, err := exec.LookPath("protoc")
	if err != nil {
		t.Skip("protoc not installed (make tools; Debian: protobuf-compiler)")
	}
	files, err := filepath.Glob("../proto/raftq/v1/*.proto")
	if err != nil || len(files) == 0 {
		t.Fatalf("no protos: %v", err)
	}
	sort.Strings(files)
	set := filepath.Join(t.TempDir(), "api.pb")
	args := []string{"-I", "../proto", "--include_source_info", "--descriptor_set_out=" + set}
	for _, f := range files {
		args = append(args, strings.TrimPrefix(f, "../proto/"))
	}
	if out, err := exec.Command(protoc, args...).CombinedOutput(); err != nil {
		t.Fatalf("protoc: %v\n%s", err, out)
	}
	raw, err := os.ReadFile(set)
	if err != nil {
		t.Fatal(err)
	}
	var fds descriptorpb.FileDescriptorSet
	if err := proto.Unmarshal(raw, &fds); err != nil {
		t.Fatal(err)
	}
	got := renderAPIDoc(&fds)
	if os.Getenv("RAFTQ_UPDATE_API_DOC") != "" {
		if err := os.WriteFile("api.md", got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile("api.md")
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("docs/api.md is not what the proto comments say (%v): run make api-doc and commit it", err)
	}
	// The reference names every RPC the server registers.
	for _, fd := range fds.File {
		for _, s := range fd.Service {
			for _, m := range s.Method {
				if !bytes.Contains(got, []byte("`"+s.GetName()+"."+m.GetName()+"`")) {
					t.Errorf("%s.%s missing from docs/api.md", s.GetName(), m.GetName())
				}
			}
		}
	}
}

// comments maps a source path (as protoc numbers it) to its comments.
type comments map[string]string

func pathKey(p []int32) string { return fmt.Sprint(p) }

func (c comments) get(p ...int32) string { return c[pathKey(p)] }

func fileComments(fd *descriptorpb.FileDescriptorProto) comments {
	c := comments{}
	for _, l := range fd.GetSourceCodeInfo().GetLocation() {
		text := strings.TrimSpace(l.GetLeadingComments())
		if tr := strings.TrimSpace(l.GetTrailingComments()); tr != "" {
			text = strings.TrimSpace(text + "\n" + tr)
		}
		if text != "" {
			c[pathKey(l.Path)] = text
		}
	}
	return c
}

// Field numbers of descriptor.proto, the paths protoc's source info uses.
const (
	fileMessage = 4
	fileEnum    = 5
	fileService = 6
	msgField    = 2
	msgNested   = 3
	msgEnum     = 4
	enumValue   = 2
	svcMethod   = 2
)

// para turns a proto comment into Markdown text on one line per paragraph,
// so that a table cell or a list item holds it.
func para(s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = strings.TrimSpace(l)
	}
	return strings.TrimSpace(strings.Join(lines, " "))
}

func cell(s string) string { return strings.ReplaceAll(para(s), "|", `\|`) }

func typeName(f *descriptorpb.FieldDescriptorProto) string {
	var t string
	switch f.GetType() {
	case descriptorpb.FieldDescriptorProto_TYPE_MESSAGE, descriptorpb.FieldDescriptorProto_TYPE_ENUM:
		t = strings.TrimPrefix(f.GetTypeName(), ".")
		t = strings.TrimPrefix(t, "raftq.v1.")
	default:
		t = strings.ToLower(strings.TrimPrefix(f.GetType().String(), "TYPE_"))
	}
	if f.GetLabel() == descriptorpb.FieldDescriptorProto_LABEL_REPEATED {
		t = "repeated " + t
	}
	return t
}

func renderAPIDoc(fds *descriptorpb.FileDescriptorSet) []byte {
	var b bytes.Buffer
	b.WriteString("# gRPC API reference\n\n")
	b.WriteString("Made from the comments in `proto/raftq/v1/*.proto` by `docs/apidoc_test.go`\n")
	b.WriteString("(`make api-doc`); a test fails when it falls behind the protos. Errors, retries\n")
	b.WriteString("and guarantees: the README's error contract and guarantees table.\n")
	for _, fd := range fds.File {
		c := fileComments(fd)
		fmt.Fprintf(&b, "\n## %s\n", fd.GetName())
		for si, s := range fd.Service {
			fmt.Fprintf(&b, "\n### service %s\n\n", s.GetName())
			if d := c.get(fileService, int32(si)); d != "" {
				b.WriteString(para(d) + "\n\n")
			}
			b.WriteString("| RPC | request → response | what |\n|---|---|---|\n")
			for mi, m := range s.Method {
				in, out := strings.TrimPrefix(m.GetInputType(), ".raftq.v1."), strings.TrimPrefix(m.GetOutputType(), ".raftq.v1.")
				if m.GetClientStreaming() {
					in = "stream " + in
				}
				if m.GetServerStreaming() {
					out = "stream " + out
				}
				fmt.Fprintf(&b, "| `%s.%s` | %s → %s | %s |\n", s.GetName(), m.GetName(), in, out, cell(c.get(fileService, int32(si), svcMethod, int32(mi))))
			}
		}
		if len(fd.MessageType) > 0 {
			b.WriteString("\n### messages\n")
			for mi, m := range fd.MessageType {
				renderMessage(&b, c, m, m.GetName(), []int32{fileMessage, int32(mi)})
			}
		}
		for ei, e := range fd.EnumType {
			renderEnum(&b, c, e, e.GetName(), []int32{fileEnum, int32(ei)})
		}
	}
	return b.Bytes()
}

func renderMessage(b *bytes.Buffer, c comments, m *descriptorpb.DescriptorProto, name string, path []int32) {
	fmt.Fprintf(b, "\n#### %s\n\n", name)
	if d := c.get(path...); d != "" {
		b.WriteString(para(d) + "\n\n")
	}
	if len(m.Field) > 0 {
		b.WriteString("| field | # | type | what |\n|---|---|---|---|\n")
		for fi, f := range m.Field {
			fp := append(append([]int32{}, path...), msgField, int32(fi))
			fmt.Fprintf(b, "| `%s` | %d | %s | %s |\n", f.GetName(), f.GetNumber(), typeName(f), cell(c.get(fp...)))
		}
	}
	for ni, n := range m.NestedType {
		if n.GetOptions().GetMapEntry() {
			continue
		}
		renderMessage(b, c, n, name+"."+n.GetName(), append(append([]int32{}, path...), msgNested, int32(ni)))
	}
	for ei, e := range m.EnumType {
		renderEnum(b, c, e, name+"."+e.GetName(), append(append([]int32{}, path...), msgEnum, int32(ei)))
	}
}

func renderEnum(b *bytes.Buffer, c comments, e *descriptorpb.EnumDescriptorProto, name string, path []int32) {
	fmt.Fprintf(b, "\n#### enum %s\n\n", name)
	if d := c.get(path...); d != "" {
		b.WriteString(para(d) + "\n\n")
	}
	b.WriteString("| value | # | what |\n|---|---|---|\n")
	for vi, v := range e.Value {
		vp := append(append([]int32{}, path...), enumValue, int32(vi))
		fmt.Fprintf(b, "| `%s` | %d | %s |\n", v.GetName(), v.GetNumber(), cell(c.get(vp...)))
	}
}
