package plugins

import (
	"context"
	"time"
)

// LinkState is where a user stands with a processor, as the processor last
// reported it. Users see it in the API (User.processorLinks) and in the
// Privacy Center.
type LinkState string

// The link states.
const (
	// LinkNone: the processor has nothing for the user (or never said).
	LinkNone LinkState = "NONE"
	// LinkPendingConfirmation: the user still has to confirm at the
	// provider, e.g. follow the link in a double opt-in mail.
	LinkPendingConfirmation LinkState = "PENDING_CONFIRMATION"
	// LinkActive: the user is subscribed, enrolled or otherwise active.
	LinkActive LinkState = "ACTIVE"
	// LinkUnsubscribed: the user was removed at the provider.
	LinkUnsubscribed LinkState = "UNSUBSCRIBED"
	// LinkFailed: the core could not get the user's data to the provider
	// (the work item went DEAD) or the provider refused it.
	LinkFailed LinkState = "FAILED"
)

// Valid reports whether s is one of the link states.
func (s LinkState) Valid() bool {
	switch s {
	case LinkNone, LinkPendingConfirmation, LinkActive, LinkUnsubscribed, LinkFailed:
		return true
	}
	return false
}

// LinkItem is one thing the provider holds for the user that the user can
// open, e.g. a survey invitation.
type LinkItem struct {
	// Kind is a short, stable word the Privacy Center may style by
	// ("survey", "confirmation").
	Kind string `json:"kind"`
	// Title is shown to the user: in English, and to readers of every
	// language Titles lacks.
	Title string `json:"title"`
	// Titles are the title per language tag ("ja": "アンケート"), for
	// readers of that language (added in SDK 0.2).
	Titles map[string]string `json:"titles,omitempty"`
	// URL opens the item at the provider (https, or this server's PublicURL).
	URL string `json:"url,omitempty"`
	// ExpiresAt, if not zero, is when the item stops working.
	ExpiresAt time.Time `json:"expiresAt,omitzero"`
}

// LinkStatus is what a processor reports about one user. It is shown to
// that user only, so it may name what the provider holds for them, but
// like Result.Ref it must hold no personal data the core did not give the
// processor: it is stored as given.
type LinkStatus struct {
	State LinkState `json:"state"`
	// Items are shown as links, in this order.
	Items []LinkItem `json:"items,omitempty"`
	// Details is free-form, JSON-encodable, small (e.g. {"list": "Weekly"}).
	Details map[string]any `json:"details,omitempty"`
	// Actions are the ids of the processor's actions (see Actor) that make
	// sense for the user now, e.g. "resendConfirmation" while pending; the
	// Privacy Center offers them as buttons.
	Actions []string `json:"actions,omitempty"`
}

// LinkStore records link statuses reported outside Deliver and Forget,
// e.g. when a provider's webhook or a confirmation link reaches the
// processor's routed handler. A status replaces the earlier one of the same
// subject. It never calls the provider, so it is safe inside a handler.
type LinkStore interface {
	Set(ctx context.Context, subject string, s LinkStatus) error
}

// Action is an operation a user may ask a processor for, e.g. resend the
// confirmation mail. The core runs it through the outbox like a delivery.
type Action struct {
	// ID names the action in requestProcessorAction ("resendConfirmation").
	ID string
	// Title is the button text shown to the user: in English, and to
	// readers of every language Titles lacks.
	Title string
	// Titles are the button text per language tag ("ja": "確認メールを再送"),
	// for readers of that language (added in SDK 0.2).
	Titles map[string]string
}

// TitleIn is the action's title for a reader of lang (a tag such as "ja").
func (a Action) TitleIn(lang string) string { return titleIn(a.Title, a.Titles, lang) }

// TitleIn is the item's title for a reader of lang (a tag such as "ja").
func (it LinkItem) TitleIn(lang string) string { return titleIn(it.Title, it.Titles, lang) }

// titleIn picks lang's own title, else English from titles, else title.
func titleIn(title string, titles map[string]string, lang string) string {
	if s := titles[lang]; s != "" {
		return s
	}
	if title == "" {
		return titles["en"]
	}
	return title
}

// ActionRequest is one run of an Action for one user. Like Request, the
// same ActionRequest (ID included) is repeated after failures.
type ActionRequest struct {
	// ID is the idempotency key of this work item.
	ID string
	// Subject is the user's pseudonym for this processor.
	Subject string
	// Action is the Action.ID the user asked for.
	Action string
	// Fields are the user's permitted fields, as in a delivery.
	Fields map[string]string
	// Ref is what the last Deliver returned as Result.Ref.
	Ref string
	// Attempt counts from 1.
	Attempt int
}

// Actor is implemented by processors that offer actions to users. The core
// runs an action only for a user whose consent for the processor's purpose
// is in force and who was delivered to before; errors are classified like
// Deliver's (Permanent, RetryAfter, else retried).
type Actor interface {
	// Act runs one. An unknown action is a Permanent error.
	Act(ctx context.Context, r ActionRequest) error
}
