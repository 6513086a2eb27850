package devmode

import (
	"context"
	"errors"
	"fmt"
	"time"

	"cloud.google.com/go/firestore"
)

// seedBase is the created_at of the first seeded document; the others
// follow an hour apart, so that every Seed writes identical data.
var seedBase = time.Date(2025, time.January, 6, 9, 0, 0, 0, time.UTC)

// seedDoc is one document Seed writes.
type seedDoc struct {
	path string
	data map[string]any
}

type seedTask struct {
	title, status, visibility, assignee string
}

var seedTasks = map[string][]seedTask{
	OrgAcme: {
		{"Ship the onboarding flow", "open", "public", "user_alice"},
		{"Renew the TLS certificates", "done", "public", "user_bob"},
		{"Prepare the board deck", "open", "private", "user_alice"},
		{"Fix the flaky CI job", "open", "public", "user_dave"},
		{"Negotiate the office lease", "open", "private", "user_alice"},
		{"Write the release notes", "done", "public", "user_bob"},
	},
	OrgGlobex: {
		{"Launch the Globex rocket", "open", "public", "user_carol"},
		{"Hire a chief of staff", "open", "private", "user_carol"},
		{"Audit the reactor", "done", "public", "user_dave"},
		{"Plan the company offsite", "open", "public", "user_dave"},
		{"Budget for Q3", "open", "private", "user_carol"},
		{"Migrate the mainframe", "done", "public", "user_dave"},
	},
}

type seedInvoice struct {
	number, customer string
	amountCents      int64
	status           string
}

var seedInvoices = map[string][]seedInvoice{
	OrgAcme: {
		{"INV-1001", "Initech", 125000, "paid"},
		{"INV-1002", "Umbrella Corp", 89900, "due"},
	},
	OrgGlobex: {
		{"INV-2001", "Hooli", 450000, "due"},
		{"INV-2002", "Vandelay Industries", 12050, "paid"},
	},
}

var seedProjectTasks = map[string][]seedTask{
	OrgAcme: {
		{"Design the p1 landing page", "open", "public", "user_alice"},
		{"p1 security review", "open", "private", "user_alice"},
	},
	OrgGlobex: {
		{"p1 capacity plan", "open", "public", "user_carol"},
		{"p1 vendor contracts", "done", "private", "user_carol"},
	},
}

// seedDocs returns every document Seed writes, with fixed ids and data.
func seedDocs() []seedDoc {
	var docs []seedDoc
	n := 0
	at := func() time.Time { n++; return seedBase.Add(time.Duration(n) * time.Hour) }
	for _, org := range []string{OrgAcme, OrgGlobex} {
		slug := orgSlug(org)
		for i, t := range seedTasks[org] {
			docs = append(docs, seedDoc{
				path: fmt.Sprintf("tasks/%s-%d", slug, i+1),
				data: map[string]any{
					"org_id": org, "title": t.title, "status": t.status, "visibility": t.visibility,
					"assignee": t.assignee, "created_at": at(),
				},
			})
		}
		for i, inv := range seedInvoices[org] {
			docs = append(docs, seedDoc{
				path: fmt.Sprintf("invoices/%s-inv-%d", slug, i+1),
				data: map[string]any{
					"org_id": org, "number": inv.number, "customer": inv.customer,
					"amount_cents": inv.amountCents, "currency": "USD", "status": inv.status,
					"created_at": at(),
				},
			})
		}
		for i, t := range seedProjectTasks[org] {
			docs = append(docs, seedDoc{
				path: fmt.Sprintf("projects/p1/tasks/%s-p1-%d", slug, i+1),
				data: map[string]any{
					"org_id": org, "project": "p1", "title": t.title, "status": t.status,
					"visibility": t.visibility, "assignee": t.assignee, "created_at": at(),
				},
			})
		}
	}
	chores := []string{"water the plants", "call the bank", "book the flights", "renew the passport", "back up the laptop"}
	for ui, u := range Users() {
		short := u.ID[len("user_"):]
		for i, text := range []string{
			"Remember to " + chores[ui%len(chores)],
			"Private note of " + short + ": only " + u.ID + " can read this",
		} {
			docs = append(docs, seedDoc{
				path: fmt.Sprintf("notes/%s-note-%d", short, i+1),
				data: map[string]any{"owner_id": u.ID, "text": text, "created_at": at()},
			})
		}
	}
	return docs
}

// Seed writes the demo data for the organizations org_acme ("acme") and
// org_globex ("globex"): per org six tasks (org_id, title, status
// open|done, visibility public|private, created_at, assignee), two
// invoices and two tasks under projects/p1/tasks, plus two notes per demo
// user (owner_id). Documents have fixed ids and data and are replaced
// whole, so Seed is idempotent: running it again restores the demo data
// (edits to seeded documents are undone; documents added since are kept).
func Seed(ctx context.Context, c *firestore.Client) error {
	if c == nil {
		return errors.New("failed to seed demo data: nil Firestore client")
	}
	bw := c.BulkWriter(ctx)
	docs := seedDocs()
	jobs := make([]*firestore.BulkWriterJob, 0, len(docs))
	for _, d := range docs {
		j, err := bw.Set(c.Doc(d.path), d.data)
		if err != nil {
			bw.End()
			return fmt.Errorf("failed to seed demo data: %s: %w", d.path, err)
		}
		jobs = append(jobs, j)
	}
	bw.End()
	for i, j := range jobs {
		if _, err := j.Results(); err != nil {
			return fmt.Errorf("failed to seed demo data: %s: %w", docs[i].path, err)
		}
	}
	return nil
}
