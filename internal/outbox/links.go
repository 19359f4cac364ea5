package outbox

// Links: what processors report about a user (plugins.LinkStatus), shown
// to that user in User.processorLinks. Statuses are stored under the
// processor and the subject the processor knows the user by, because a
// processor reporting asynchronously (from its provider's webhook) only
// knows the subject, and the core cannot invert the subject's HMAC. To
// answer for a user, the core computes the user's subject for each
// processor and reads those keys; a request never calls a provider.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"time"

	"github.com/consentgraph/consentgraph/internal/accounts"
	"github.com/consentgraph/consentgraph/internal/apperr"
	"github.com/consentgraph/consentgraph/internal/work"
	"github.com/consentgraph/consentgraph/plugins"
)

// Act is the action of an item that runs a plugin action (plugins.Actor).
const Act = work.Act

// LinkStore is the storage of link statuses: whole records under their
// key, nothing interpreted.
type LinkStore interface {
	// PutLink stores l, replacing the record under its processor and subject.
	PutLink(ctx context.Context, l Link) error
	// Links returns the records stored under keys, in any order; keys
	// without one are left out.
	Links(ctx context.Context, keys []LinkKey) ([]Link, error)
	// DeleteLinks removes the records under keys; absent keys are no error.
	DeleteLinks(ctx context.Context, keys []LinkKey) error
}

// LinkKey names one processor's record about one user.
type LinkKey struct {
	Processor string
	Subject   string
}

// Link is one stored link status. Data is the JSON of a
// plugins.LinkStatus without its state (items, details, actions).
type Link struct {
	Processor string
	Subject   string
	State     string
	Data      []byte
	UpdatedAt time.Time
}

// linkData is what Link.Data holds.
type linkData struct {
	Items   []plugins.LinkItem `json:"items,omitempty"`
	Details map[string]any     `json:"details,omitempty"`
	Actions []string           `json:"actions,omitempty"`
}

// UserLink is a user's link with one processor.
type UserLink struct {
	Processor *Processor
	Status    plugins.LinkStatus
	// UpdatedAt is zero when the processor never reported anything.
	UpdatedAt time.Time
}

// linkWriter is a processor's plugins.LinkStore: it can only write under
// its own processor's name.
type linkWriter struct {
	s         *Service
	processor string
}

func (w linkWriter) Set(ctx context.Context, subject string, st plugins.LinkStatus) error {
	return w.s.putLink(ctx, w.processor, subject, st)
}

func (s *Service) linkStore(processor string) plugins.LinkStore {
	return linkWriter{s: s, processor: processor}
}

func (s *Service) putLink(ctx context.Context, processor, subject string, st plugins.LinkStatus) error {
	if subject == "" {
		return errors.New("link status: empty subject")
	}
	if !st.State.Valid() {
		return fmt.Errorf("link status: unknown state %q", st.State)
	}
	for _, it := range st.Items {
		// Items become links in users' pages: only web addresses.
		if it.URL == "" {
			continue
		}
		if u, err := url.Parse(it.URL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return fmt.Errorf("link status: item %q: URL must be an http(s) address", it.Title)
		}
	}
	raw, err := json.Marshal(linkData{Items: st.Items, Details: st.Details, Actions: st.Actions})
	if err != nil {
		return fmt.Errorf("link status of %s: %w", processor, err)
	}
	l := Link{Processor: processor, Subject: subject, State: string(st.State), Data: raw, UpdatedAt: s.now()}
	if err := s.store.PutLink(ctx, l); err != nil {
		return fmt.Errorf("store link status of %s: %w", processor, err)
	}
	return nil
}

// linkKeys are the keys of userID's records, one per configured processor.
func (s *Service) linkKeys(ctx context.Context, userID string) ([]LinkKey, error) {
	keys := make([]LinkKey, 0, len(s.procs))
	for _, p := range s.procs {
		sub, err := s.Pseudonym(ctx, p.Name, userID)
		if err != nil {
			return nil, err
		}
		keys = append(keys, LinkKey{Processor: p.Name, Subject: sub})
	}
	return keys, nil
}

// UserLinks returns userID's link with every configured processor, in
// config order; a processor that reported nothing is LinkNone.
func (s *Service) UserLinks(ctx context.Context, userID string) ([]UserLink, error) {
	keys, err := s.linkKeys(ctx, userID)
	if err != nil {
		return nil, err
	}
	stored, err := s.store.Links(ctx, keys)
	if err != nil {
		return nil, fmt.Errorf("read link statuses: %w", err)
	}
	byProc := make(map[string]Link, len(stored))
	for _, l := range stored {
		byProc[l.Processor] = l
	}
	out := make([]UserLink, 0, len(s.procs))
	for _, p := range s.procs {
		ul := UserLink{Processor: p, Status: plugins.LinkStatus{State: plugins.LinkNone}}
		if l, ok := byProc[p.Name]; ok {
			var d linkData
			if len(l.Data) > 0 {
				if err := json.Unmarshal(l.Data, &d); err != nil {
					return nil, fmt.Errorf("link status of %s: %w", p.Name, err)
				}
			}
			ul.Status = plugins.LinkStatus{State: plugins.LinkState(l.State), Items: d.Items, Details: d.Details, Actions: d.Actions}
			ul.UpdatedAt = l.UpdatedAt
		}
		out = append(out, ul)
	}
	return out, nil
}

// Actions lists the actions processor p offers users: its manifest's
// (build refuses a manifest with actions and no plugins.Actor).
func (p *Processor) Actions() []plugins.Action { return p.Manifest.Actions }

// RequestAction queues the action a user asked processor for. The
// dispatcher runs it like a delivery (consent re-checked then), so the
// request itself never calls the provider.
func (s *Service) RequestAction(ctx context.Context, userID, processor, action string) error {
	p, ok := s.byName[processor]
	if !ok {
		return &apperr.Error{Code: apperr.BadUserInput, Field: "processor", Message: fmt.Sprintf("there is no processor %q", processor)}
	}
	if !slices.ContainsFunc(p.Actions(), func(a plugins.Action) bool { return a.ID == action }) {
		return &apperr.Error{Code: apperr.BadUserInput, Field: "action", Message: fmt.Sprintf("processor %q offers no action %q", processor, action)}
	}
	it := s.newItem(userID, p, Act, "requested by the user: "+action)
	it.Ref = action
	if _, err := s.store.Enqueue(ctx, it); err != nil {
		return fmt.Errorf("enqueue processor action: %w", err)
	}
	return nil
}

// LinksExportSection is the "processorLinks" part of a data export: what
// each processor reported about the user.
func (s *Service) LinksExportSection(ctx context.Context, userID string) (any, error) {
	links, err := s.UserLinks(ctx, userID)
	if err != nil {
		return nil, fmt.Errorf("export processor links: %w", err)
	}
	type exported struct {
		Processor string `json:"processor"`
		plugins.LinkStatus
		UpdatedAt time.Time `json:"updatedAt"`
	}
	out := []exported{}
	for _, l := range links {
		if l.UpdatedAt.IsZero() {
			continue // nothing stored
		}
		out = append(out, exported{Processor: l.Processor.Name, LinkStatus: l.Status, UpdatedAt: l.UpdatedAt})
	}
	return out, nil
}

// onAccountChangeLinks removes an erased user's link statuses when the
// erasure starts; an error pauses the erasure, which resumes later, so
// none can be left behind.
func (s *Service) onAccountChangeLinks(ctx context.Context, c accounts.Change) error {
	if c.Kind != accounts.Erasing {
		return nil
	}
	keys, err := s.linkKeys(ctx, c.UserID)
	if err != nil {
		return err
	}
	if err := s.store.DeleteLinks(ctx, keys); err != nil {
		return fmt.Errorf("delete link statuses on erasure: %w", err)
	}
	return nil
}

// linkAfter records the link status an outcome implies: after a Deliver
// the processor's own (Result.Link) or ACTIVE, after a withdrawal's Forget
// UNSUBSCRIBED, and after an erasure's Forget no record at all (a status
// written between the erasure's start and this forget goes too). An error
// retries the item, which the provider sees as a repeat.
func (d *Dispatcher) linkAfter(ctx context.Context, it *Item, p *Processor, subject string, res *plugins.Result) error {
	s := d.s
	switch {
	case it.Action == Forget && it.Erase:
		if err := s.store.DeleteLinks(ctx, []LinkKey{{Processor: p.Name, Subject: subject}}); err != nil {
			return fmt.Errorf("delete link status after erasure: %w", err)
		}
		return nil
	case it.Action == Forget:
		return s.putLink(ctx, p.Name, subject, plugins.LinkStatus{State: plugins.LinkUnsubscribed})
	case res != nil && res.Link != nil:
		return s.putLink(ctx, p.Name, subject, *res.Link)
	default:
		return s.putLink(ctx, p.Name, subject, plugins.LinkStatus{State: plugins.LinkActive})
	}
}

// linkDead marks the link FAILED when a delivery or a withdrawal's forget
// went DEAD: the user should know the provider may not hold what their
// consent says. Best effort: the DEAD item itself is what admins act on.
func (d *Dispatcher) linkDead(ctx context.Context, it *Item, p *Processor) {
	if it.Action == Act || it.Erase {
		return
	}
	s := d.s
	subject, err := s.Pseudonym(ctx, p.Name, it.UserID)
	if err == nil {
		err = s.putLink(context.WithoutCancel(ctx), p.Name, subject, plugins.LinkStatus{State: plugins.LinkFailed})
	}
	if err != nil {
		s.log.WarnContext(ctx, "could not mark link FAILED", "item", it.ID, "processor", p.Name, "err", err)
	}
}

// act runs an Act item: the plugin action the user asked for, only while
// their consent for the processor's purpose is in force and something was
// delivered (an action acts on an existing subscription).
func (d *Dispatcher) act(ctx, callCtx context.Context, it *Item, p *Processor, subject string) error {
	s := d.s
	actor, ok := p.Impl.(plugins.Actor)
	if !ok || !slices.ContainsFunc(p.Actions(), func(a plugins.Action) bool { return a.ID == it.Ref }) {
		d.finish(ctx, it, Finish{State: Dead, LastError: fmt.Sprintf("processor offers no action %q", it.Ref)})
		return errHandled
	}
	doc, err := d.liveRecipient(ctx, it)
	if doc == nil {
		return err
	}
	st := doc.Procs[p.Name]
	if !s.opts.Consent.Rules().InForce(&doc.Consent, p.Purpose) {
		d.finishState(ctx, it, Skipped, "consent not in force")
		return errHandled
	}
	if !st.Delivered {
		d.finishState(ctx, it, Skipped, "nothing was delivered")
		return errHandled
	}
	u, err := s.opts.Accounts.Get(ctx, it.UserID)
	if err != nil {
		return fmt.Errorf("read user: %w", err)
	}
	if need := emailNeed(p, u); need != "" {
		d.finishState(ctx, it, Skipped, need)
		return errHandled
	}
	fields := fieldValues(u, p.Fields, s.opts.Now())
	if err := actor.Act(callCtx, plugins.ActionRequest{ID: it.ID, Subject: subject, Action: it.Ref, Fields: fields,
		Ref: st.Ref, Attempt: it.Attempts}); err != nil {
		return err
	}
	var given []string
	for _, f := range p.Fields {
		if _, ok := fields[f]; ok {
			given = append(given, f)
		}
	}
	// The action handed the processor these fields again: a disclosure.
	d.finish(ctx, it, Finish{State: Done, Disclosure: s.disclosure(it, given, "DELIVERED")})
	return errHandled
}
