package api

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"time"

	entsql "entgo.io/ent/dialect/sql"
	"github.com/shopspring/decimal"

	"orderflow/api/oas"
	"orderflow/domain"
	"orderflow/ent"
	"orderflow/ent/product"
	"orderflow/platform/db"
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
func (h *Handler) GetProduct(ctx context.Context, params oas.GetProductParams) (*oas.GetProductOKHeaders, error) {
	p, err := h.client.Product.Get(ctx, params.ID)
	if err != nil {
		return nil, fmt.Errorf("get product %d: %w", params.ID, orNotFound(err, "Product", params.ID))
	}
	out := productOut(p)
	return &oas.GetProductOKHeaders{ETag: productETag(out), Response: out}, nil
}

// productChecks are the field checks of CreateProduct's and UpdateProduct's body: what the
// contract's schema cannot express.
func productChecks(req *oas.ProductInput) fieldChecks {
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
	return c
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
	if err := productChecks(req).err(); err != nil {
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
		return nil, createError("product", err)
	}
	out := productOut(p)
	return &oas.ProductHeaders{Location: "/api/products/" + strconv.Itoa(p.ID), ETag: productETag(out), Response: out}, nil
}

// UpdateProduct replaces a product (admin); a description left out is removed. With
// If-Match, only the product as the client read it is replaced: the product is locked and
// compared with the tags first, so that a stock computed from an earlier read cannot undo an
// order's reservation or release made since.
func (h *Handler) UpdateProduct(ctx context.Context, req *oas.ProductInput, params oas.UpdateProductParams) (*oas.GetProductOKHeaders, error) {
	if err := requireAdmin(ctx); err != nil {
		return nil, err
	}
	var match entityTags
	if params.IfMatch.Set {
		var err error
		if match, err = parseIfMatch(params.IfMatch.Value); err != nil {
			return nil, invalid("If-Match", err.Error())
		}
	}
	if err := productChecks(req).err(); err != nil {
		return nil, err
	}
	var p *ent.Product
	err := db.WithTx(ctx, h.client, func(tx *ent.Tx) error {
		if params.IfMatch.Set {
			if err := checkProductVersion(ctx, tx, params.ID, match); err != nil {
				return err
			}
		}
		upd := tx.Product.UpdateOneID(params.ID).
			SetName(req.Name).
			SetPrice(decimal.Decimal(req.Price)).
			SetStock(req.Stock)
		if req.Description.Set {
			upd.SetDescription(req.Description.Value)
		} else {
			upd.ClearDescription()
		}
		var err error
		p, err = upd.Save(ctx)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("update product %d: %w", params.ID, orNotFound(err, "Product", params.ID))
	}
	out := productOut(p)
	return &oas.GetProductOKHeaders{ETag: productETag(out), Response: out}, nil
}

// errProductChanged answers a product replacement whose If-Match no longer matches.
var errProductChanged = problem(http.StatusPreconditionFailed,
	"The product has changed since the version in If-Match was read (an order may have reserved or released its stock): nothing was changed. Read it again and retry with its new ETag.")

// errWeakTag answers a product replacement whose If-Match holds the current ETag only as a
// weak tag, as a proxy that compresses answers may have made it.
var errWeakTag = problem(http.StatusPreconditionFailed,
	"If-Match compares entity tags strongly, and a weak tag (W/\"...\") never matches: nothing was changed. Send the ETag as the product was read, without W/.")

// checkProductVersion locks product id in tx and returns errProductChanged unless match
// matches its current ETag (errWeakTag when it holds it as a weak tag).
func checkProductVersion(ctx context.Context, tx *ent.Tx, id int, match entityTags) error {
	p, err := tx.Product.Query().Where(product.ID(id)).
		Modify(func(s *entsql.Selector) { s.For(entsql.LockNoKeyUpdate) }).
		Only(ctx)
	if err != nil {
		return err
	}
	current := productETag(productOut(p))
	switch {
	case match.matches(current):
		return nil
	case slices.Contains(match.weak, current):
		return errWeakTag
	}
	return errProductChanged
}

// productETag is the strong entity tag of p: a digest of every field, so that it changes
// whenever the product does, an order's reservation of its stock included. The fields are
// taken as PostgreSQL stores them (times in microseconds, the price with two decimals), so
// that the product a create or a replacement returns has the tag of the stored one.
func productETag(p oas.Product) string {
	sum := sha256.New()
	fmt.Fprintf(sum, "%d\x00%s\x00%t\x00%s\x00%s\x00%d\x00%s\x00%s", p.ID, p.Name, p.Description.Set, p.Description.Value,
		decimal.Decimal(p.Price).StringFixed(2), p.Stock, asStored(p.CreatedAt), asStored(p.UpdatedAt))
	return `"` + hex.EncodeToString(sum.Sum(nil)[:16]) + `"`
}

// asStored is t as PostgreSQL keeps it: pgx sends times cut to the microsecond.
func asStored(t time.Time) string { return t.Truncate(time.Microsecond).UTC().Format(time.RFC3339Nano) }

// DeleteProduct deletes a product that no order contains (admin).
func (h *Handler) DeleteProduct(ctx context.Context, params oas.DeleteProductParams) error {
	if err := requireAdmin(ctx); err != nil {
		return err
	}
	err := h.client.Product.DeleteOneID(params.ID).Exec(ctx)
	if db.Code(err) == db.ForeignKeyViolation {
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
