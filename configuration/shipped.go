package configuration

// The development secrets that secrets.json ships with: they let a fresh checkout and
// docker compose run, and must be replaced anywhere else.
const (
	ShippedJWTSecret     = "dev-only-secret-change-me-0123456789abcdef"
	ShippedAdminPassword = "Admin@12345"
)

// ShippedSecrets returns the keys of c that still hold a development secret shipped in
// secrets.json, in KeyTable's order.
func (c *Config) ShippedSecrets() []Key {
	shipped := map[string]bool{
		"auth.jwtSecret": c.Auth.JWTSecret == ShippedJWTSecret,
		"admin.password": c.Admin.Password == ShippedAdminPassword,
	}
	var out []Key
	for _, k := range KeyTable() {
		if shipped[k.Path] {
			out = append(out, k)
		}
	}
	return out
}
