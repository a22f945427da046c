// Package orderflow is an order-processing service: a REST API, an event worker and an
// expiry cron job around PostgreSQL and RabbitMQ. This file holds every go:generate line.
package orderflow

//go:generate go run -mod=mod ./ent/entc.go
//go:generate go tool ogen --config ogen.yml --target api/oas --package oas --clean openapi.yaml
