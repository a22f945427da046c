// Package faults holds the fault and load suite of orderflow: tests, behind the build tag
// `faults`, that run the real api, worker and cronjob processes under a steady stream of
// orders while the broker, the database or the processes themselves fail, and then account
// for every order. Run them with `make test-faults` (see README.md); they stop and start the
// shared PostgreSQL and RabbitMQ, so never together with other tests.
package faults
