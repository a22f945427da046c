package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/shopspring/decimal"

	"orderflow/api/oas"
	"orderflow/domain"
	"orderflow/ent"
	"orderflow/ent/product"
)

func productOut(p *ent.Product) oas.Product {
	out := oas.Product{
		ID:        p.ID,
		Name:      p.Name,
		Price:     oas.Money(p.Price),
		Stock:     p.Stock,
		CreatedAt: p.CreatedAt.UTC(),
		UpdatedAt: p.UpdatedAt.UTC(),
	}
	if p.Description != nil {
		out.Description = oas.NewOptString(*p.Description)
	}
	return out
}

// ListProducts lists products, oldest first.
func (h *Handler) ListProducts(ctx context.Context, params oas.ListProductsParams) (*oas.ListProductsOKHeaders, error) {
	limit, offset := page(params.Limit, params.Offset)
	total, err := h.client.Product.Query().Count(ctx)
	if err != nil {
		return nil, fmt.Errorf("count products: %w", err)
	}
	products, err := h.client.Product.Query().Order(ent.Asc(product.FieldID)).Limit(limit).Offset(offset).All(ctx)
	if err != nil {
		return nil, fmt.Errorf("list products: %w", err)
	}
	out := make([]oas.Product, len(products))
	for i, p := range products {
		out[i] = productOut(p)
	}
	return &oas.ListProductsOKHeaders{XTotalCount: total, Response: out}, nil
}

// GetProduct reads a product.
func (h *Handler) GetProduct(ctx context.Context, params oas.GetProductParams) (*oas.Product, error) {
	p, err := h.client.Product.Get(ctx, params.ID)
	if err != nil {
		return nil, fmt.Errorf("get product %d: %w", params.ID, orNotFound(err, "Product", params.ID))
	}
	out := productOut(p)
	return &out, nil
}

// validateProduct checks what the contract's schema cannot express.
func validateProduct(req *oas.ProductInput) error {
	var c fieldChecks
	c.check("name", validateText(req.Name, 1, domain.MaxNameLength))
	if req.Description.Set {
		c.check("description", validateText(req.Description.Value, 0, domain.MaxDescriptionLength))
	}
	price := checkExponent(decimal.Decimal(req.Price))
	if price == nil {
		price = domain.ValidatePrice(decimal.Decimal(req.Price))
	}
	c.check("price", price)
	if req.Stock < 0 {
		c.check("stock", errNegativeStock)
	}
	return c.err()
}

var errNegativeStock = errors.New("must not be negative")

// maxMoneyExponent bounds the decimal exponent of an amount in a request. Without it,
// valid JSON numbers such as 1e999999999 or 1e-999999999 would make the exact comparisons
// of ValidatePrice compute a power of ten with a billion digits, keeping a core busy for
// minutes. Every storable amount has an exponent far inside the bound.
const maxMoneyExponent = 40

// checkExponent refuses an amount whose exponent is out of bounds, with the error that
// ValidatePrice would give it: too large, or too many decimals.
func checkExponent(d decimal.Decimal) error {
	switch e := d.Exponent(); {
	case e > maxMoneyExponent:
		return domain.ErrMoneyTooLarge
	case e < -maxMoneyExponent:
		return domain.ErrMoneyPrecision
	}
	return nil
}

// CreateProduct creates a product (admin).
func (h *Handler) CreateProduct(ctx context.Context, req *oas.ProductInput) (*oas.ProductHeaders, error) {
	if err := requireAdmin(ctx); err != nil {
		return nil, err
	}
	if err := validateProduct(req); err != nil {
		return nil, err
	}
	create := h.client.Product.Create().
		SetName(req.Name).
		SetPrice(decimal.Decimal(req.Price)).
		SetStock(req.Stock)
	if req.Description.Set {
		create.SetDescription(req.Description.Value)
	}
	p, err := create.Save(ctx)
	if err != nil {
		return nil, fmt.Errorf("create product: %w", err)
	}
	return &oas.ProductHeaders{Location: "/api/products/" + strconv.Itoa(p.ID), Response: productOut(p)}, nil
}

// UpdateProduct replaces a product (admin); a description left out is removed.
func (h *Handler) UpdateProduct(ctx context.Context, req *oas.ProductInput, params oas.UpdateProductParams) (*oas.Product, error) {
	if err := requireAdmin(ctx); err != nil {
		return nil, err
	}
	if err := validateProduct(req); err != nil {
		return nil, err
	}
	upd := h.client.Product.UpdateOneID(params.ID).
		SetName(req.Name).
		SetPrice(decimal.Decimal(req.Price)).
		SetStock(req.Stock)
	if req.Description.Set {
		upd.SetDescription(req.Description.Value)
	} else {
		upd.ClearDescription()
	}
	p, err := upd.Save(ctx)
	if err != nil {
		return nil, fmt.Errorf("update product %d: %w", params.ID, orNotFound(err, "Product", params.ID))
	}
	out := productOut(p)
	return &out, nil
}

// DeleteProduct deletes a product that no order contains (admin).
func (h *Handler) DeleteProduct(ctx context.Context, params oas.DeleteProductParams) error {
	if err := requireAdmin(ctx); err != nil {
		return err
	}
	err := h.client.Product.DeleteOneID(params.ID).Exec(ctx)
	if pgCode(err) == pgForeignKeyViolation {
		return problem(http.StatusConflict, "The product is part of an order and cannot be deleted.")
	}
	if err != nil {
		return fmt.Errorf("delete product %d: %w", params.ID, orNotFound(err, "Product", params.ID))
	}
	return nil
}

// requireAdmin returns errForbidden unless the caller is an admin.
func requireAdmin(ctx context.Context) error {
	p, err := principalFrom(ctx)
	if err != nil {
		return err
	}
	if !p.IsAdmin() {
		return errForbidden
	}
	return nil
}
