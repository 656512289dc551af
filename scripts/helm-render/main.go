// helm-render renders a Helm chart the way `helm template` does, for checks
// on machines without helm (scripts/validate-deploy.sh): Go's text/template
// with the sprig functions and Helm's own (include, tpl, required, toYaml,
// fromYaml, toJson, fromJson, lookup), values from values.yaml merged with -f
// files, numbers as float64 as Helm has them, and missing map keys as errors
// (like `helm lint --strict`). It is not helm: no subcharts, no hooks, no
// values schema, `.Files` has `Get` only, and `lookup` finds nothing, as
// under `helm template`.
//
// Built with Debian's packages (golang-go, golang-github-masterminds-sprig-dev,
// golang-gopkg-yaml.v2-dev) in GOPATH mode:
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go build -o helm-render scripts/helm-render/main.go
//	helm-render -chart helm/switchboard -f my-values.yaml -name sb -namespace chat > out.yaml
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/template"

	"github.com/Masterminds/sprig"
	yaml "gopkg.in/yaml.v2"
)

// chartFiles is the chart's `.Files`: every file outside templates/, by its
// path relative to the chart.
type chartFiles map[string][]byte

// Get returns a file's content, or "" when there is no such file (as Helm).
func (f chartFiles) Get(name string) string { return string(f[name]) }

type valueFiles []string

func (v *valueFiles) String() string     { return strings.Join(*v, ",") }
func (v *valueFiles) Set(s string) error { *v = append(*v, s); return nil }

func main() {
	chartDir := flag.String("chart", "", "chart directory")
	name := flag.String("name", "release", "release name")
	namespace := flag.String("namespace", "default", "release namespace")
	notes := flag.Bool("notes", false, "print NOTES.txt instead of the manifests")
	var files valueFiles
	flag.Var(&files, "f", "values file merged over values.yaml (repeatable)")
	flag.Parse()
	if *chartDir == "" {
		fail(errors.New("-chart is required"))
	}
	out, err := render(*chartDir, *name, *namespace, files, *notes)
	if err != nil {
		fail(err)
	}
	os.Stdout.WriteString(out)
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "helm-render: %v\n", err)
	os.Exit(1)
}

// chartMeta holds the Chart.yaml fields templates use as .Chart.*.
type chartMeta struct {
	APIVersion  string `yaml:"apiVersion"`
	Name        string `yaml:"name"`
	Version     string `yaml:"version"`
	AppVersion  string `yaml:"appVersion"`
	KubeVersion string `yaml:"kubeVersion"`
	Description string `yaml:"description"`
	Type        string `yaml:"type"`
}

func render(dir, release, namespace string, valueFiles []string, notes bool) (string, error) {
	var meta chartMeta
	if err := readYAML(filepath.Join(dir, "Chart.yaml"), &meta); err != nil {
		return "", err
	}
	var values map[string]interface{}
	if err := readValues(filepath.Join(dir, "values.yaml"), &values); err != nil {
		return "", err
	}
	for _, f := range valueFiles {
		var over map[string]interface{}
		if err := readValues(f, &over); err != nil {
			return "", err
		}
		values = merge(values, over)
	}

	root := template.New("gotpl")
	root.Option("missingkey=error")
	funcs := sprig.TxtFuncMap()
	delete(funcs, "env")
	delete(funcs, "expandenv")
	includes := map[string]int{}
	funcs["include"] = func(name string, data interface{}) (string, error) {
		if includes[name] > 100 {
			return "", fmt.Errorf("include %q: recursion too deep", name)
		}
		includes[name]++
		defer func() { includes[name]-- }()
		var buf bytes.Buffer
		err := root.ExecuteTemplate(&buf, name, data)
		return buf.String(), err
	}
	funcs["tpl"] = func(text string, data interface{}) (string, error) {
		t, err := root.Clone()
		if err != nil {
			return "", err
		}
		t, err = t.New("tpl").Parse(text)
		if err != nil {
			return "", err
		}
		var buf bytes.Buffer
		err = t.Execute(&buf, data)
		return buf.String(), err
	}
	funcs["required"] = func(msg string, v interface{}) (interface{}, error) {
		if v == nil || v == "" {
			return nil, errors.New(msg)
		}
		return v, nil
	}
	funcs["toYaml"] = toYAML
	funcs["fromYaml"] = func(s string) map[string]interface{} {
		var m map[string]interface{}
		if err := unmarshalHelm([]byte(s), &m); err != nil {
			return map[string]interface{}{"Error": err.Error()}
		}
		return m
	}
	funcs["toJson"] = func(v interface{}) string {
		b, _ := json.Marshal(v)
		return string(b)
	}
	funcs["fromJson"] = func(s string) map[string]interface{} {
		m := map[string]interface{}{}
		if err := json.Unmarshal([]byte(s), &m); err != nil {
			m["Error"] = err.Error()
		}
		return m
	}
	funcs["lookup"] = func(apiVersion, kind, namespace, name string) (map[string]interface{}, error) {
		return map[string]interface{}{}, nil
	}
	root.Funcs(funcs)

	files := chartFiles{}
	err := filepath.Walk(dir, func(path string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		rel = filepath.ToSlash(rel)
		if strings.HasPrefix(rel, "templates/") || rel == "values.yaml" || rel == "Chart.yaml" {
			return nil
		}
		files[rel], err = os.ReadFile(path)
		return err
	})
	if err != nil {
		return "", err
	}

	base := meta.Name + "/templates"
	var names []string
	err = filepath.Walk(filepath.Join(dir, "templates"), func(path string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(filepath.Join(dir, "templates"), path)
		text, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		tname := base + "/" + filepath.ToSlash(rel)
		if _, err := root.New(tname).Parse(string(text)); err != nil {
			return err
		}
		names = append(names, tname)
		return nil
	})
	if err != nil {
		return "", err
	}
	sort.Strings(names)

	var out strings.Builder
	for _, tname := range names {
		file := filepath.Base(tname)
		isNotes := file == "NOTES.txt"
		if strings.HasPrefix(file, "_") || isNotes != notes {
			continue
		}
		data := map[string]interface{}{
			"Values": values,
			"Chart":  meta,
			"Release": map[string]interface{}{
				"Name": release, "Namespace": namespace, "Service": "Helm",
				"IsInstall": true, "IsUpgrade": false, "Revision": 1,
			},
			"Capabilities": map[string]interface{}{
				"KubeVersion": map[string]interface{}{"Version": "v1.37.0", "Major": "1", "Minor": "37"},
			},
			"Template": map[string]interface{}{"Name": tname, "BasePath": base},
			"Files":    files,
		}
		var buf bytes.Buffer
		if err := root.ExecuteTemplate(&buf, tname, data); err != nil {
			return "", err
		}
		text := strings.ReplaceAll(buf.String(), "<no value>", "")
		if strings.TrimSpace(text) == "" {
			continue
		}
		if notes {
			out.WriteString(text)
			continue
		}
		fmt.Fprintf(&out, "---\n# Source: %s\n%s\n", tname, strings.TrimLeft(text, "\n"))
	}
	return out.String(), nil
}

func readYAML(path string, into interface{}) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := yaml.Unmarshal(data, into); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// readValues reads a values file as Helm does: YAML turned into JSON
// types (string keys, float64 numbers).
func readValues(path string, into *map[string]interface{}) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := unmarshalHelm(data, into); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if *into == nil {
		*into = map[string]interface{}{}
	}
	return nil
}

func unmarshalHelm(data []byte, into *map[string]interface{}) error {
	var raw interface{}
	if err := yaml.Unmarshal(data, &raw); err != nil {
		return err
	}
	j, err := json.Marshal(jsonable(raw))
	if err != nil {
		return err
	}
	return json.Unmarshal(j, into)
}

// jsonable turns yaml.v2's map[interface{}]interface{} into string-keyed maps.
func jsonable(v interface{}) interface{} {
	switch v := v.(type) {
	case map[interface{}]interface{}:
		m := make(map[string]interface{}, len(v))
		for k, val := range v {
			m[fmt.Sprint(k)] = jsonable(val)
		}
		return m
	case []interface{}:
		for i := range v {
			v[i] = jsonable(v[i])
		}
		return v
	default:
		return v
	}
}

// merge lays over onto base like Helm's values coalescing: maps merge key by
// key, anything else replaces, and null removes the key.
func merge(base, over map[string]interface{}) map[string]interface{} {
	out := make(map[string]interface{}, len(base))
	for k, v := range base {
		out[k] = v
	}
	for k, v := range over {
		if v == nil {
			delete(out, k)
			continue
		}
		bm, bok := out[k].(map[string]interface{})
		om, ook := v.(map[string]interface{})
		if bok && ook {
			out[k] = merge(bm, om)
		} else {
			out[k] = v
		}
	}
	return out
}

// toYAML is Helm's toYaml (sigs.k8s.io/yaml): through JSON, then YAML with
// sorted keys, without the trailing newline.
func toYAML(v interface{}) string {
	j, err := json.Marshal(v)
	if err != nil {
		return ""
	}
	var obj interface{}
	if err := yaml.Unmarshal(j, &obj); err != nil {
		return ""
	}
	out, err := yaml.Marshal(obj)
	if err != nil {
		return ""
	}
	return strings.TrimSuffix(string(out), "\n")
}
