// Package yamldoc is what the configuration and rule-file loaders share
// about YAML streams: each of their files is one document, and what a
// second one holds must be refused, not silently dropped.
package yamldoc

import (
	"errors"
	"io"

	"go.yaml.in/yaml/v3"
)

// Extra reads the documents dec holds after the first and returns the
// first node of the first one that is not empty (a trailing "---" or "..."
// is empty), nil when none is, or the decoder's error.
func Extra(dec *yaml.Decoder) (*yaml.Node, error) {
	for {
		var more yaml.Node
		err := dec.Decode(&more)
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		if len(more.Content) == 0 || more.Content[0].Kind == yaml.ScalarNode && more.Content[0].Tag == "!!null" {
			continue
		}
		return more.Content[0], nil
	}
}
