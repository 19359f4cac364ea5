// Package all imports every built-in processor, registering their types.
// Adding a processor to the server is one more import here (or in main).
package all

import (
	_ "github.com/consentgraph/consentgraph/plugins/example"
	_ "github.com/consentgraph/consentgraph/plugins/httpconnector"
	_ "github.com/consentgraph/consentgraph/plugins/mailchimp"
	_ "github.com/consentgraph/consentgraph/plugins/smtpnewsletter"
	_ "github.com/consentgraph/consentgraph/plugins/surveymonkey"
	_ "github.com/consentgraph/consentgraph/plugins/webhook"
)
