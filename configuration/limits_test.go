package configuration

import (
	"testing"

	"orderflow/domain"
)

// TestLimitsAreTheAccountRules: configuration imports nothing of the project, so it keeps
// its own copy of the account rules that admin.email and admin.password must follow; the
// copy must be domain's, or the API would refuse at start-up what validation passed.
func TestLimitsAreTheAccountRules(t *testing.T) {
	t.Parallel()
	for _, l := range []struct {
		name       string
		here, rule int
	}{
		{"shortest password", minPasswordChars, domain.MinPasswordLength},
		{"longest password, bytes", maxPasswordBytes, domain.MaxPasswordBytes},
		{"longest name", maxNameChars, domain.MaxNameLength},
		{"longest e-mail address", maxEmailChars, domain.MaxEmailLength},
	} {
		if l.here != l.rule {
			t.Errorf("%s: %d here, %d in domain", l.name, l.here, l.rule)
		}
	}
}
