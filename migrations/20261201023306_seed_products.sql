-- Seed the catalogue with two sample products.
INSERT INTO "products" ("name", "description", "price", "stock", "created_at", "updated_at") VALUES
  ('Sample Product 1', 'A sample product to try orderflow with.', 99.99, 100, now(), now()),
  ('Sample Product 2', 'Another sample product to try orderflow with.', 149.99, 50, now(), now());
