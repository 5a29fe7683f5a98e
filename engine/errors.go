package engine

import "fmt"

// Code is a WFP-style error code. Management callers match on it, in Go
// with errors.Is against the Err* values below, elsewhere by the string in
// the Nats-Service-Error-Code header.
type Code string

const (
	CodeAlreadyExists   Code = "FWP_E_ALREADY_EXISTS"
	CodeFilterNotFound  Code = "FWP_E_FILTER_NOT_FOUND"
	CodeCalloutNotFound Code = "FWP_E_CALLOUT_NOT_FOUND"
	CodeInUse           Code = "FWP_E_IN_USE"
	// CodeCalloutNotificationFailed: a callout agent refused the filter's
	// ADD notification, so the filter was not added (R7).
	CodeCalloutNotificationFailed Code = "FWP_E_CALLOUT_NOTIFICATION_FAILED"
	CodeInvalidParameter          Code = "FWP_E_INVALID_PARAMETER"
	CodeIncompatibleLayer         Code = "FWP_E_INCOMPATIBLE_LAYER"
	CodeTimeout                   Code = "FWP_E_TIMEOUT"
	CodeInternal                  Code = "FWP_E_INTERNAL"
	CodeEngineNotResponding       Code = "FWP_E_ENGINE_NOT_RESPONDING"
	// CodeInvalidEnumerator: a listing's later page was asked as of a log
	// sequence the engines no longer keep; list again.
	CodeInvalidEnumerator Code = "FWP_E_INVALID_ENUMERATOR"
	// CodeStorage: the server refused to store the write (its store or
	// the account is full, or the event is larger than it takes); nothing
	// was written, so the outcome is certain.
	CodeStorage Code = "FWP_E_STORAGE"
	// CodeLogLoss: the log ends before writes that were acknowledged; the
	// engine refuses writes until an operator accepts the loss.
	CodeLogLoss Code = "FWP_E_LOG_LOSS"
)

// Error is what a refused management request returns: a code and a message
// that names the field or object at fault.
type Error struct {
	Code    Code   `json:"code"`
	Message string `json:"message"`
}

func (e *Error) Error() string {
	if e.Message == "" {
		return string(e.Code)
	}
	return string(e.Code) + ": " + e.Message
}

// Is matches any *Error with the same code, so
// errors.Is(err, engine.ErrFilterNotFound) works whatever the message.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

// Sentinels for errors.Is.
var (
	ErrAlreadyExists             = &Error{Code: CodeAlreadyExists}
	ErrFilterNotFound            = &Error{Code: CodeFilterNotFound}
	ErrCalloutNotFound           = &Error{Code: CodeCalloutNotFound}
	ErrInUse                     = &Error{Code: CodeInUse}
	ErrCalloutNotificationFailed = &Error{Code: CodeCalloutNotificationFailed}
	ErrInvalidParameter          = &Error{Code: CodeInvalidParameter}
	ErrIncompatibleLayer         = &Error{Code: CodeIncompatibleLayer}
	ErrTimeout                   = &Error{Code: CodeTimeout}
	ErrInternal                  = &Error{Code: CodeInternal}
	ErrEngineNotResponding       = &Error{Code: CodeEngineNotResponding}
	ErrInvalidEnumerator         = &Error{Code: CodeInvalidEnumerator}
	ErrStorage                   = &Error{Code: CodeStorage}
	ErrLogLoss                   = &Error{Code: CodeLogLoss}
)

func errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}
