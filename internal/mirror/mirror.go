// Package mirror rewrites image references by mirror rules such as
// "docker.io → harbor.internal/dockerhub". The admission webhook (from
// ClusterImageMirror objects) and the offline manifest tools (from flags or
// files) share it. It has no Kubernetes dependency.
//
// Rules match on the fully qualified repository name, on path-segment
// boundaries: source "docker.io" matches every Docker Hub image,
// "docker.io/bitnami" matches "docker.io/bitnami/redis" but not
// "docker.io/bitnamilegacy/redis". The most specific source (the most path
// segments) wins. Tags and digests are kept; an image with neither gets
// ":latest", as the runtime would pull.
package mirror

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/distribution/reference"
)

// Rule maps a source registry (optionally with a path prefix) to a mirror.
type Rule struct {
	Source string `json:"source"`
	Mirror string `json:"mirror"`
}

// Rules is a compiled, ordered set of rules. The zero value rewrites
// nothing.
type Rules struct {
	rules []compiled
}

type compiled struct {
	Rule
	source   string // normalized: domain[/path]
	mirror   string // domain[/path], no trailing slash
	segments int
	order    int
}

// Compile validates and orders rules. On equal specificity the earlier
// rule wins.
func Compile(rules []Rule) (*Rules, error) {
	out := &Rules{}
	seen := map[string]string{}
	var errs []error
	for i, r := range rules {
		src, err := NormalizeSource(r.Source)
		if err != nil {
			errs = append(errs, fmt.Errorf("rule %d: source: %w", i+1, err))
			continue
		}
		mir, err := NormalizeMirror(r.Mirror)
		if err != nil {
			errs = append(errs, fmt.Errorf("rule %d: mirror: %w", i+1, err))
			continue
		}
		if prev, dup := seen[src]; dup && prev != mir {
			// Keep the first; a later duplicate would never apply.
			continue
		}
		seen[src] = mir
		out.rules = append(out.rules, compiled{Rule: r, source: src, mirror: mir, segments: strings.Count(src, "/") + 1, order: i})
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	sort.SliceStable(out.rules, func(i, j int) bool {
		if out.rules[i].segments != out.rules[j].segments {
			return out.rules[i].segments > out.rules[j].segments
		}
		return out.rules[i].order < out.rules[j].order
	})
	return out, nil
}

// MustCompile is Compile for rules known to be valid.
func MustCompile(rules []Rule) *Rules {
	r, err := Compile(rules)
	if err != nil {
		panic(err)
	}
	return r
}

// Len is the number of rules.
func (r *Rules) Len() int {
	if r == nil {
		return 0
	}
	return len(r.rules)
}

// NormalizeSource turns a rule source into the form repository names take
// after Docker normalization: "docker.io", "index.docker.io" and
// "registry-1.docker.io" are all "docker.io"; a trailing slash is dropped.
func NormalizeSource(s string) (string, error) { return normalizeLocation(s, true) }

// NormalizeMirror checks where copies go — a registry host with an
// optional repository path, used as written — and trims it.
func NormalizeMirror(s string) (string, error) { return normalizeLocation(s, false) }

// normalizeLocation checks a registry host with an optional repository
// path, as rule sources and mirrors are written, and trims it. Sources also
// fold Docker Hub's aliases into docker.io; a mirror is used as written.
func normalizeLocation(s string, foldDockerHub bool) (string, error) {
	s = strings.TrimSuffix(strings.TrimSpace(s), "/")
	if s == "" {
		return "", errors.New("empty")
	}
	if strings.Contains(s, "://") {
		return "", fmt.Errorf("%q: give a registry host and optional path, without a scheme", s)
	}
	domain, path, _ := strings.Cut(s, "/")
	if foldDockerHub {
		switch domain {
		case "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com":
			domain = "docker.io"
		}
	}
	if !strings.ContainsAny(domain, ".:") && domain != "localhost" {
		return "", fmt.Errorf("%q: the first part must be a registry host (with a dot or a port, or localhost)", s)
	}
	full := domain
	if path != "" {
		full += "/" + path
	}
	// A valid location is a valid repository name prefix.
	if _, err := reference.ParseNormalizedNamed(full + "/x"); err != nil {
		return "", fmt.Errorf("%q is not a registry host with an optional repository path", s)
	}
	return full, nil
}

// Rewrite returns the image as pulled through the most specific matching
// rule, and the rule. ok is false when no rule matches (the image is
// returned unchanged). An invalid image reference is an error.
func (r *Rules) Rewrite(image string) (rewritten string, rule Rule, ok bool, err error) {
	if r.Len() == 0 {
		return image, Rule{}, false, nil
	}
	named, err := reference.ParseNormalizedNamed(image)
	if err != nil {
		return image, Rule{}, false, fmt.Errorf("invalid image reference %q: %w", image, err)
	}
	out, rule, ok, err := r.RewriteNamed(named)
	if err != nil || !ok {
		return image, rule, ok, err
	}
	return out.String(), rule, true, nil
}

// RewriteNamed is Rewrite for an already parsed reference.
func (r *Rules) RewriteNamed(named reference.Named) (rewritten reference.Named, rule Rule, ok bool, err error) {
	if r.Len() == 0 {
		return named, Rule{}, false, nil
	}
	image := named.String()
	name := named.Name()
	for _, c := range r.rules {
		rest, matched := strings.CutPrefix(name, c.source)
		if !matched || (rest != "" && rest[0] != '/') {
			continue
		}
		// WithName checks the name alone, cheaper than parsing a full
		// reference; the mirror and the rest were each validated already.
		newName, err := reference.WithName(c.mirror + rest)
		if err != nil {
			return named, Rule{}, false, fmt.Errorf("mirror %q for %q: %w", c.mirror, image, err)
		}
		var out reference.Named = newName
		tagged, hasTag := named.(reference.Tagged)
		digested, hasDigest := named.(reference.Digested)
		if hasTag {
			if out, err = reference.WithTag(out, tagged.Tag()); err != nil {
				return named, Rule{}, false, err
			}
		}
		if hasDigest {
			if out, err = reference.WithDigest(out, digested.Digest()); err != nil {
				return named, Rule{}, false, err
			}
		}
		if !hasTag && !hasDigest {
			out = reference.TagNameOnly(out)
		}
		return out, c.Rule, true, nil
	}
	return named, Rule{}, false, nil
}
