// Command helm-template renders a Helm chart the way `helm template` does, for machines without Helm (it is in
// neither Debian nor npm). Helm's engine is Go's text/template with Sprig's functions and a few of its own; this
// program uses the same text/template and the same Sprig (Debian's golang-github-masterminds-sprig-dev: 3.2.3,
// a version Helm 3 releases have vendored) and writes Helm's own functions again from its documentation:
// https://helm.sh/docs/chart_template_guide/function_list/ and https://helm.sh/docs/howto/charts_tips_and_tricks/.
//
// What it models: Chart.yaml's kubeVersion constraint, values.yaml coalesced with each -f file (maps merged, a null
// deleting the default), --set-string, .Release, .Chart, .Capabilities (APIVersions.Has, KubeVersion), .Files.Get
// (symbolic links followed, as Helm's loader does), .Template; include, tpl, required, toYaml, fromYaml, toJson,
// fromJson, lookup (empty, as with `helm template`), Sprig without env/expandenv; missing keys rendering as "". What
// it does not: subcharts, values.schema.json, hooks, .helmignore, toToml, --set with type inference.
//
// Usage: helm-template [--name NAME] [--namespace NS] [--kube-version vX.Y.Z] [--api-versions GROUP/VERSION]...
//
//	[-f VALUES]... [--set-string K=V]... CHART_DIR
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"text/template"

	semver "github.com/Masterminds/semver/v3"
	sprig "github.com/Masterminds/sprig/v3"
	"github.com/ghodss/yaml"
)

type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "Error:", err)
		os.Exit(1)
	}
}

func run() error {
	name := flag.String("name", "release-name", "release name (.Release.Name)")
	namespace := flag.String("namespace", "default", "release namespace (.Release.Namespace)")
	kubeVersion := flag.String("kube-version", "v1.30.0", "Kubernetes version (.Capabilities.KubeVersion)")
	var valueFiles, setStrings, apiVersions stringList
	flag.Var(&valueFiles, "f", "values file; repeat, later files win")
	flag.Var(&setStrings, "set-string", "KEY.PATH=VALUE, a string value set after the files; repeat")
	flag.Var(&apiVersions, "api-versions", "an API version the cluster has, for .Capabilities.APIVersions.Has; repeat")
	flag.Parse()
	if flag.NArg() != 1 {
		return errors.New("one chart directory expected")
	}
	chartDir := flag.Arg(0)

	chartMeta, err := readYAMLMap(filepath.Join(chartDir, "Chart.yaml"))
	if err != nil {
		return err
	}
	chartName, _ := chartMeta["name"].(string)
	if chartName == "" {
		return errors.New("Chart.yaml: name is required")
	}
	values, err := readYAMLMap(filepath.Join(chartDir, "values.yaml"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	for _, file := range valueFiles {
		override, err := readYAMLMap(file)
		if err != nil {
			return err
		}
		values = coalesce(override, values)
	}
	for _, kv := range setStrings {
		key, value, ok := strings.Cut(kv, "=")
		if !ok {
			return fmt.Errorf("--set-string %s: KEY=VALUE expected", kv)
		}
		setPath(values, strings.Split(key, "."), value)
	}

	files, templates, err := loadChartFiles(chartDir, chartName)
	if err != nil {
		return err
	}
	// Helm refuses a chart whose kubeVersion constraint the cluster's version does not meet.
	if constraint, ok := chartMeta["kubeVersion"].(string); ok && constraint != "" {
		c, err := semver.NewConstraint(constraint)
		if err != nil {
			return fmt.Errorf("Chart.yaml kubeVersion %q: %w", constraint, err)
		}
		v, err := semver.NewVersion(*kubeVersion)
		if err != nil {
			return fmt.Errorf("--kube-version %q: %w", *kubeVersion, err)
		}
		if !c.Check(v) {
			return fmt.Errorf("chart requires kubeVersion: %s which is incompatible with Kubernetes %s", constraint, *kubeVersion)
		}
	}
	major, minor := splitKubeVersion(*kubeVersion)
	top := map[string]interface{}{
		"Values":  values,
		"Release": map[string]interface{}{"Name": *name, "Namespace": *namespace, "Service": "Helm", "IsInstall": true, "IsUpgrade": false, "Revision": 1},
		"Chart":   chartObject(chartMeta),
		"Capabilities": map[string]interface{}{
			"KubeVersion": map[string]interface{}{"Version": *kubeVersion, "GitVersion": *kubeVersion, "Major": major, "Minor": minor},
			"APIVersions": apiVersionSet(append([]string{"v1", "apps/v1", "batch/v1", "rbac.authorization.k8s.io/v1", "policy/v1", "autoscaling/v2", "networking.k8s.io/v1"}, apiVersions...)),
		},
		"Files": files,
	}
	return render(os.Stdout, templates, top)
}

// loadChartFiles reads every file of the chart: those under templates/ are the templates, keyed as Helm names them
// (CHART/templates/REL); the others are .Files. filepath.WalkDir does not enter linked directories, so a link is
// resolved with os.Stat, as Helm's loader follows links.
func loadChartFiles(chartDir, chartName string) (chartFiles, map[string]string, error) {
	files := chartFiles{}
	templates := map[string]string{}
	var walk func(dir, rel string) error
	walk = func(dir, rel string) error {
		entries, err := os.ReadDir(dir)
		if err != nil {
			return err
		}
		for _, entry := range entries {
			full, relName := filepath.Join(dir, entry.Name()), path.Join(rel, entry.Name())
			info, err := os.Stat(full)
			if err != nil {
				return fmt.Errorf("%s: %w", relName, err)
			}
			if info.IsDir() {
				if err := walk(full, relName); err != nil {
					return err
				}
				continue
			}
			data, err := os.ReadFile(full)
			if err != nil {
				return err
			}
			if strings.HasPrefix(relName, "templates/") {
				templates[chartName+"/"+relName] = string(data)
			} else {
				files[relName] = data
			}
		}
		return nil
	}
	return files, templates, walk(chartDir, "")
}

// render parses all templates into one set (so each sees the others' defines) and writes each one whose base name does
// not start with '_', in name order; the first failure ends the render, as in Helm.
func render(out *os.File, templates map[string]string, top map[string]interface{}) error {
	set := template.New("gotpl")
	funcs := funcMap(set)
	set.Funcs(funcs)
	names := make([]string, 0, len(templates))
	for n := range templates {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if _, err := set.New(n).Parse(templates[n]); err != nil {
			return err
		}
	}
	// Helm renders a missing key as "" rather than failing or printing "<no value>".
	set.Option("missingkey=zero")
	for _, n := range names {
		base := path.Base(n)
		if strings.HasPrefix(base, "_") || base == "NOTES.txt" {
			continue
		}
		data := shallowCopy(top)
		data["Template"] = map[string]interface{}{"Name": n, "BasePath": path.Dir(n)}
		var buf bytes.Buffer
		// Helm stops at the first template that fails.
		if err := set.ExecuteTemplate(&buf, n, data); err != nil {
			return errors.New(cleanExecError(err))
		}
		// Like `helm template`, each YAML document on its own under the "# Source:" line of its template.
		for _, doc := range documentSeparator.Split(strings.ReplaceAll(buf.String(), "<no value>", ""), -1) {
			if strings.TrimSpace(doc) != "" {
				fmt.Fprintf(out, "---\n# Source: %s\n%s\n", n, strings.TrimSpace(doc))
			}
		}
	}
	return nil
}

// documentSeparator is the "---" line between YAML documents, as Helm splits a template's output.
var documentSeparator = regexp.MustCompile(`(?:^|\s*\n)---\s*`)

// cleanExecError shortens text/template's "template: T:L:C: executing "T" at <fail ...>: error calling fail: MSG"
// to Helm's "execution error at (T:L:C): MSG".
func cleanExecError(err error) string {
	msg := err.Error()
	const calling = "error calling "
	if i := strings.LastIndex(msg, calling); i >= 0 {
		rest := msg[i+len(calling):]
		if j := strings.Index(rest, ": "); j >= 0 {
			location := strings.TrimPrefix(msg, "template: ")
			if k := strings.Index(location, ": "); k >= 0 {
				location = location[:k]
			}
			return fmt.Sprintf("execution error at (%s): %s", location, rest[j+2:])
		}
	}
	return msg
}

func funcMap(set *template.Template) template.FuncMap {
	funcs := sprig.TxtFuncMap()
	// Helm takes these out: a chart must not read the environment of whoever renders it.
	delete(funcs, "env")
	delete(funcs, "expandenv")
	includeDepth := map[string]int{}
	funcs["include"] = func(name string, data interface{}) (string, error) {
		// Helm's bound on recursive includes.
		if includeDepth[name] > 1000 {
			return "", fmt.Errorf("rendering template has a nested reference name: %s", name)
		}
		includeDepth[name]++
		defer func() { includeDepth[name]-- }()
		var buf bytes.Buffer
		err := set.ExecuteTemplate(&buf, name, data)
		return buf.String(), err
	}
	funcs["tpl"] = func(text string, data interface{}) (string, error) {
		clone, err := set.Clone()
		if err != nil {
			return "", err
		}
		t, err := clone.New("tpl").Parse(text)
		if err != nil {
			return "", err
		}
		var buf bytes.Buffer
		err = t.Execute(&buf, data)
		return strings.ReplaceAll(buf.String(), "<no value>", ""), err
	}
	funcs["required"] = func(message string, value interface{}) (interface{}, error) {
		if s, ok := value.(string); value == nil || ok && s == "" {
			return value, errors.New(message)
		}
		return value, nil
	}
	funcs["lookup"] = func(apiVersion, kind, namespace, name string) (map[string]interface{}, error) {
		return map[string]interface{}{}, nil
	}
	funcs["toYaml"] = func(v interface{}) string {
		data, err := yaml.Marshal(v)
		if err != nil {
			return ""
		}
		return strings.TrimSuffix(string(data), "\n")
	}
	funcs["fromYaml"] = func(text string) map[string]interface{} {
		m := map[string]interface{}{}
		if err := yaml.Unmarshal([]byte(text), &m); err != nil {
			m["Error"] = err.Error()
		}
		return m
	}
	funcs["fromYamlArray"] = func(text string) []interface{} {
		var a []interface{}
		if err := yaml.Unmarshal([]byte(text), &a); err != nil {
			a = []interface{}{err.Error()}
		}
		return a
	}
	funcs["toJson"] = func(v interface{}) string {
		data, err := json.Marshal(v)
		if err != nil {
			return ""
		}
		return string(data)
	}
	funcs["fromJson"] = func(text string) map[string]interface{} {
		m := map[string]interface{}{}
		if err := json.Unmarshal([]byte(text), &m); err != nil {
			m["Error"] = err.Error()
		}
		return m
	}
	funcs["fromJsonArray"] = func(text string) []interface{} {
		var a []interface{}
		if err := json.Unmarshal([]byte(text), &a); err != nil {
			a = []interface{}{err.Error()}
		}
		return a
	}
	return funcs
}

// readYAMLMap reads a YAML file as Helm reads values: through JSON, so every number is a float64.
func readYAMLMap(file string) (map[string]interface{}, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	m := map[string]interface{}{}
	if err := yaml.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return m, nil
}

// coalesce merges the defaults under the overrides, as Helm merges values.yaml under -f files: maps are merged key by
// key, any other override replaces the default, and an override of null deletes the key.
func coalesce(overrides, defaults map[string]interface{}) map[string]interface{} {
	out := map[string]interface{}{}
	for k, v := range defaults {
		out[k] = v
	}
	for k, v := range overrides {
		if v == nil {
			delete(out, k)
			continue
		}
		om, oIsMap := v.(map[string]interface{})
		dm, dIsMap := out[k].(map[string]interface{})
		if oIsMap && dIsMap {
			out[k] = coalesce(om, dm)
		} else {
			out[k] = v
		}
	}
	return out
}

func setPath(values map[string]interface{}, keys []string, value string) {
	for _, k := range keys[:len(keys)-1] {
		next, ok := values[k].(map[string]interface{})
		if !ok {
			next = map[string]interface{}{}
			values[k] = next
		}
		values = next
	}
	values[keys[len(keys)-1]] = value
}

// chartObject gives Chart.yaml's fields the names templates use (.Chart.Name, .Chart.AppVersion, ...).
func chartObject(meta map[string]interface{}) map[string]interface{} {
	out := map[string]interface{}{}
	for k, v := range meta {
		if k == "apiVersion" {
			out["APIVersion"] = v
			continue
		}
		out[strings.ToUpper(k[:1])+k[1:]] = v
	}
	return out
}

func splitKubeVersion(v string) (string, string) {
	parts := strings.SplitN(strings.TrimPrefix(v, "v"), ".", 3)
	if len(parts) < 2 {
		return parts[0], "0"
	}
	return parts[0], parts[1]
}

func shallowCopy(m map[string]interface{}) map[string]interface{} {
	out := make(map[string]interface{}, len(m)+1)
	for k, v := range m {
		out[k] = v
	}
	return out
}

// apiVersionSet is .Capabilities.APIVersions: Has answers for "group/version" and for "group/version/Kind".
type apiVersionSet []string

func (s apiVersionSet) Has(v string) bool {
	for _, have := range s {
		if have == v || strings.HasPrefix(v, have+"/") {
			return true
		}
	}
	return false
}

// chartFiles is .Files: the chart's files outside templates/, by path relative to the chart.
type chartFiles map[string][]byte

func (f chartFiles) Get(name string) string      { return string(f[name]) }
func (f chartFiles) GetBytes(name string) []byte { return f[name] }
