# syntax=docker/dockerfile:1

# Build stage: modules are downloaded in their own layer, so a source change does not
# download them again. The image's Go is go.mod's: the image builds with its own toolchain
# only (GOTOOLCHAIN=local), so an older one would refuse the module.
FROM golang:1.26.8-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o bin/orderflow ./cmd/orderflow

# Runtime stage: the static binary, which embeds the migrations, and the default
# configuration, run as a non-root user. Every process runs from this one image; only the
# command differs.
FROM gcr.io/distroless/static-debian12:nonroot AS runtime
WORKDIR /app
COPY --from=build /src/bin/orderflow /usr/local/bin/orderflow
COPY configuration/instance.json configuration/secrets.json /app/configuration/
ENV ORDERFLOW_CONFIG_DIR=/app/configuration
USER nonroot:nonroot
EXPOSE 8080
ENTRYPOINT ["orderflow"]
CMD ["api"]
