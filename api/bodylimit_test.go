package api

import (
	"fmt"
	"strings"
	"testing"

	"orderflow/configuration"
)

// TestLargestValidBodiesFitTheDefaultLimit: the default http.maxBodyBytes, kept small so that
// the bodies read before a request has a place cost little memory, takes the largest body of
// every operation at least four times over: a product whose name and description use their
// whole length in characters that JSON escapes as surrogate pairs (12 bytes each), and an
// order of the most items with the largest numbers. The rest is room for indentation.
func TestLargestValidBodiesFitTheDefaultLimit(t *testing.T) {
	t.Parallel()
	limit := configuration.Defaults().HTTP.MaxBodyBytes
	escaped := func(n int) string { return strings.Repeat(`\ud83d\ude00`, n) }
	product := fmt.Sprintf(`{"name":"%s","description":"%s","price":9999999999.99,"stock":9007199254740991}`, escaped(100), escaped(500))
	items := make([]string, 100)
	for i := range items {
		items[i] = `{"productId":-9223372036854775808,"quantity":1000000}`
	}
	order := `{"userId":-9223372036854775808,"items":[` + strings.Join(items, ",") + `]}`
	user := fmt.Sprintf(`{"name":"%s","email":"%s","password":"%s","currentPassword":"%s","role":"customer"}`,
		escaped(100), strings.Repeat("a", 100), strings.Repeat("a", 72), strings.Repeat("a", 72))
	for name, body := range map[string]string{"product": product, "order": order, "user": user} {
		if n := int64(len(body)); 4*n > limit {
			t.Errorf("the largest %s body is %d bytes, more than a quarter of http.maxBodyBytes's default %d", name, n, limit)
		}
	}
}
