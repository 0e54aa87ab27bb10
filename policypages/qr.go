package policypages

import (
	"fmt"

	"rsc.io/qr"
)

// inviteURL is what the invite QR code holds: Delta Chat opens it to create
// a profile on the relay.
func inviteURL(mailDomain string) string {
	return "DCACCOUNT:https://" + mailDomain + "/new"
}

// qrPNG draws the invite QR code as a PNG, 10 pixels per module, with the
// quiet zone scanners need around it.
func qrPNG(mailDomain string) ([]byte, error) {
	code, err := qr.Encode(inviteURL(mailDomain), qr.M)
	if err != nil {
		return nil, fmt.Errorf("invite QR code for %s: %w", mailDomain, err)
	}
	code.Scale = 10
	return code.PNG(), nil
}
