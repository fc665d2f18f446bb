package webhook

import (
	"strings"
	"testing"
)

// TestImageCacheKeepsOnlyValidImages: the cache lives as long as the
// mirror rules, so what a Pod author sends must not pin memory: images
// that do not parse, and overlong ones, are resolved every time.
func TestImageCacheKeepsOnlyValidImages(t *testing.T) {
	c := &imageCache{}
	for _, bad := range []string{"::not an image::", "nginx:@@bad", strings.Repeat("a", 5000)} {
		if r := c.resolve("", nil, bad); r.Err == "" && len(bad) <= maxCachedImageLen {
			t.Fatalf("%.20q resolved without an error", bad)
		}
	}
	if n := c.size.Load(); n != 0 {
		t.Errorf("%d invalid images were cached", n)
	}
	first := c.resolve("", nil, "nginx:1.27")
	if first.Err != "" || c.size.Load() != 1 {
		t.Fatalf("a valid image: err %q, cache size %d", first.Err, c.size.Load())
	}
	if again := c.resolve("", nil, "nginx:1.27"); again != first {
		t.Error("a valid image was resolved again instead of taken from the cache")
	}
}
