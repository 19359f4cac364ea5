# Reference image for compose.yaml: a static binary on a distroless base.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /consentgraph .

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /consentgraph /consentgraph
EXPOSE 8080
ENTRYPOINT ["/consentgraph", "--addr", "0.0.0.0:8080"]
