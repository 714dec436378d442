package config

import (
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// configKeys lists every key of the file, as a path ("limits.idle_timeout",
// "dnsbl.zones[].zone"), from the structs the decoder fills: leaves (keys
// with a value) and blocks (keys with keys below).
func configKeys(t reflect.Type, prefix string, leaves, blocks *[]string) {
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		if !sf.IsExported() {
			continue
		}
		name, opts, _ := strings.Cut(sf.Tag.Get("yaml"), ",")
		if name == "-" {
			continue
		}
		ft := sf.Type
		if strings.Contains(opts, "inline") {
			configKeys(ft, prefix, leaves, blocks)
			continue
		}
		if name == "" {
			name = strings.ToLower(sf.Name)
		}
		key := prefix + name
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		switch {
		case ft.Kind() == reflect.Struct:
			*blocks = append(*blocks, key)
			configKeys(ft, key+".", leaves, blocks)
		case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
			*blocks = append(*blocks, key)
			configKeys(ft.Elem(), key+"[].", leaves, blocks)
		default:
			*leaves = append(*leaves, key)
		}
	}
}

// yamlKeys lists the key paths a YAML tree holds, in configKeys' form.
func yamlKeys(n *yaml.Node, prefix string, out map[string]bool) {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			yamlKeys(c, prefix, out)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			key := prefix + n.Content[i].Value
			out[key] = true
			yamlKeys(n.Content[i+1], key+".", out)
		}
	case yaml.SequenceNode:
		for _, c := range n.Content {
			yamlKeys(c, strings.TrimSuffix(prefix, ".")+"[].", out)
		}
	}
}

// readmeKeys lists the keys the tables of the README's Configuration
// section document: a row's first cell names a key in full
// (`greylist.redis.username`) and may go on with its siblings by their
// last part (`password`, `db`).
func readmeKeys(readme string) map[string]bool {
	out := map[string]bool{}
	code := regexp.MustCompile("`([^`]*)`")
	sibling := regexp.MustCompile(`^[a-z][a-z0-9_]*$`) // not a default like 1s
	_, section, _ := strings.Cut(readme, "\n## Configuration\n")
	section, _, _ = strings.Cut(section, "\n## ")
	for _, line := range strings.Split(section, "\n") {
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		cell := strings.SplitN(line, "|", 3)[1]
		parent := ""
		for _, m := range code.FindAllStringSubmatch(cell, -1) {
			k := m[1]
			if strings.Contains(k, ".") || parent == "" {
				out[k] = true
				if i := strings.LastIndexByte(k, '.'); i >= 0 {
					parent = k[:i+1]
				} else {
					parent = "" // top-level names stand alone
				}
				continue
			}
			if sibling.MatchString(k) {
				out[parent+k] = true
			}
		}
	}
	return out
}

// TestEveryKeyDocumented: every key of the configuration structs is in the
// commented example file and in a README table, and every key the README
// documents exists: a key added to a struct without its documentation,
// or documentation left behind by a removed key, fails here.
func TestEveryKeyDocumented(t *testing.T) {
	var leaves, blocks []string
	configKeys(reflect.TypeOf(Config{}), "", &leaves, &blocks)
	if len(leaves) < 50 {
		t.Fatalf("only %d keys found: %v", len(leaves), leaves)
	}
	data, err := os.ReadFile("../gatewayd.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		t.Fatal(err)
	}
	example := map[string]bool{}
	yamlKeys(&root, "", example)
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	documented := readmeKeys(string(readme))
	for _, k := range leaves {
		if !example[k] {
			t.Errorf("gatewayd.example.yaml lacks %s", k)
		}
		if !documented[k] {
			t.Errorf("README.md documents no %s", k)
		}
	}
	for k := range documented {
		if !slices.Contains(leaves, k) && !slices.Contains(blocks, k) {
			t.Errorf("README.md documents %s, which is no key", k)
		}
	}
}
