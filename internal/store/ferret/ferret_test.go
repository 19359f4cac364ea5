package ferret

import (
	"context"
	"log/slog"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// The double answers as FerretDB, keeps data across a restart on the same
// directory (how copy-store reads an old data directory), and stops.
func TestStartServesAndKeepsData(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	for round := range 2 {
		uri, stop, err := Start(ctx, dir, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		c, err := mongo.Connect(options.Client().ApplyURI(uri))
		if err != nil {
			stop()
			t.Fatal(err)
		}
		coll := c.Database("d").Collection("c")
		if round == 0 {
			if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: "x"}}); err != nil {
				t.Error(err)
			}
		} else if n, err := coll.CountDocuments(ctx, bson.D{}); n != 1 || err != nil {
			t.Errorf("after restart: %d documents, %v", n, err)
		}
		var info bson.M
		if err := c.Database("admin").RunCommand(ctx, bson.D{{Key: "buildInfo", Value: 1}}).Decode(&info); err != nil || info["ferretdbVersion"] == nil {
			t.Errorf("buildInfo does not name FerretDB: %v %v", info, err)
		}
		_ = c.Disconnect(ctx)
		stop()
	}
}

func TestStartRefusesAnEndedContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := Start(ctx, t.TempDir(), nil); err == nil {
		t.Fatal("started with an ended context")
	}
}
