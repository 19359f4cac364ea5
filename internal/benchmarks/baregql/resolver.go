package baregql

import (
	"context"
	"net/http"

	"github.com/99designs/gqlgen/graphql/handler"
	"github.com/99designs/gqlgen/graphql/handler/transport"
)

// Resolver answers from one user held in memory.
type Resolver struct{ User *User }

// Query implements ResolverRoot.
func (r *Resolver) Query() QueryResolver { return queryResolver{r} }

type queryResolver struct{ r *Resolver }

func (q queryResolver) Me(context.Context) (*User, error) { return q.r.User, nil }

// Handler serves the schema over POST with JSON, like the real server.
func Handler(u *User) http.Handler {
	srv := handler.New(NewExecutableSchema(Config{Resolvers: &Resolver{User: u}}))
	srv.AddTransport(transport.POST{})
	return srv
}
