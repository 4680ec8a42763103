// Package errcat is the error catalogue of Relais: every error a caller can
// receive has a reason from the list below, a gRPC code and a fixed,
// lower-case message. Errors travel through the broker as *Error values;
// only the gRPC edge turns them into a status (Status), carrying an
// ErrorInfo with the reason and, where relevant, BadRequest field
// violations or RetryInfo. The catalogue is rendered into docs/errors.md by
// Markdown, and a test keeps the two in step.
package errcat

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Domain is the ErrorInfo domain of every Relais error.
const Domain = "relais"

// Reason is the machine-readable cause of an error, stable across versions.
type Reason string

// The catalogue. Keep it in step with entries below.
const (
	CredentialMissing               Reason = "credential_missing"
	CredentialInvalid               Reason = "credential_invalid"
	CredentialRevoked               Reason = "credential_revoked"
	CredentialExpired               Reason = "credential_expired"
	InvalidCSR                      Reason = "invalid_csr"
	IssuerUnavailable               Reason = "issuer_unavailable"
	ConsumerUnknown                 Reason = "consumer_unknown"
	ConsumerSuspended               Reason = "consumer_suspended"
	NoGrant                         Reason = "no_grant"
	PurposeNotGranted               Reason = "purpose_not_granted"
	GrantExpired                    Reason = "grant_expired"
	GrantNotYetValid                Reason = "grant_not_yet_valid"
	ScopeNotGranted                 Reason = "scope_not_granted"
	InvalidRequest                  Reason = "invalid_request"
	MalformedRequest                Reason = "malformed_request"
	InvalidRecipient                Reason = "invalid_recipient"
	InvalidSubject                  Reason = "invalid_subject"
	InvalidFieldMask                Reason = "invalid_field_mask"
	RateLimited                     Reason = "rate_limited"
	DailyQuotaExceeded              Reason = "daily_quota_exceeded"
	DuplicateInFlight               Reason = "duplicate_in_flight"
	Throttled                       Reason = "throttled"
	QuotaUnavailable                Reason = "quota_unavailable"
	RegistryUnavailable             Reason = "registry_unavailable"
	RequestTooLarge                 Reason = "request_too_large"
	SubjectNotFound                 Reason = "subject_not_found"
	SubjectNotIdentifiable          Reason = "subject_not_identifiable"
	SourceUnavailable               Reason = "source_unavailable"
	SourceTimeout                   Reason = "source_timeout"
	SourceInvalidResponse           Reason = "source_invalid_response"
	ServiceNotConfigured            Reason = "service_not_configured"
	DesignationNotGranted           Reason = "designation_not_granted"
	CitizenLoginNotConfigured       Reason = "citizen_login_not_configured"
	IdentityProviderUnavailable     Reason = "identity_provider_unavailable"
	IdentityProviderInvalidResponse Reason = "identity_provider_invalid_response"
	CitizenTokenInvalid             Reason = "citizen_token_invalid"
	CitizenTokenExpired             Reason = "citizen_token_expired"
	CitizenTokenWrongAudience       Reason = "citizen_token_wrong_audience"
	CitizenTokenWrongIssuer         Reason = "citizen_token_wrong_issuer"
	CitizenLoginTooWeak             Reason = "citizen_login_too_weak"
	CitizenClaimsInvalid            Reason = "citizen_claims_invalid"
	MethodNotFound                  Reason = "method_not_found"
	MethodNotAllowed                Reason = "method_not_allowed"
	AuditUnavailable                Reason = "audit_unavailable"
	NotFound                        Reason = "not_found"
	AlreadyExists                   Reason = "already_exists"
	Cancelled                       Reason = "cancelled"
	Internal                        Reason = "internal"
)

// Entry documents one reason.
type Entry struct {
	Reason  Reason
	Code    codes.Code
	Message string // what the caller reads: lower-case, no trailing period
	Doc     string // when it happens and what to do, for docs/errors.md
}

var entries = []Entry{
	{CredentialMissing, codes.Unauthenticated, "no verified client certificate",
		"The call arrived without a verified client certificate. The data API only accepts mTLS; present the certificate issued to your body."},
	{CredentialInvalid, codes.Unauthenticated, "client certificate carries no identity this service accepts",
		"The certificate verified but does not carry exactly one Relais identity URI SAN of the kind this API serves: `urn:relais:consumer:<SIRET>` on the data API, `urn:relais:operator:<id>` on the admin API (a consumer certificate can never call the admin API, nor an operator one the data API)."},
	{CredentialRevoked, codes.Unauthenticated, "client certificate is revoked",
		"The certificate was revoked by the operator (or directly in the issuing CA). Calls on connections opened before the revocation are refused too. Ask the operator for a new credential."},
	{CredentialExpired, codes.Unauthenticated, "client certificate has expired",
		"The certificate's validity ended while the connection was open. Renew before expiry (`CredentialService.Renew`, or the `client` package that does it for you) and reconnect."},
	{InvalidCSR, codes.InvalidArgument, "certificate signing request is refused",
		"The CSR of a renewal is malformed, its signature does not verify, it names another identity than the caller's certificate, or its key is weak (RSA under 2048 bits, or an unsupported curve)."},
	{IssuerUnavailable, codes.Unavailable, "certificate issuer is unavailable",
		"The broker could not reach its certificate authority (Vault) to renew the credential. Existing valid certificates keep working; retry later."},
	{ConsumerUnknown, codes.Unauthenticated, "consumer is not registered",
		"The certificate names a SIRET that is not a registered consumer. Ask the operator to onboard your body."},
	{ConsumerSuspended, codes.PermissionDenied, "consumer is suspended",
		"The operator has suspended your body: every call is refused until it is resumed."},
	{NoGrant, codes.PermissionDenied, "no grant for this service",
		"Your body holds no grant (habilitation) for the service called."},
	{PurposeNotGranted, codes.PermissionDenied, "purpose is not granted for this service",
		"The `access_context.purpose` is not one of the purposes of your grants for this service."},
	{GrantExpired, codes.PermissionDenied, "grant has expired",
		"The grant that covers this service and purpose ended; ask the operator to extend it."},
	{GrantNotYetValid, codes.PermissionDenied, "grant is not yet valid",
		"The grant that covers this service and purpose starts later."},
	{ScopeNotGranted, codes.PermissionDenied, "none of the requested fields is granted",
		"The field mask asks only for fields outside your grant. Fields outside the grant are otherwise silently left out (see the minimisation rule), so this error only says the intersection is empty; it is decided before any source is called and says nothing about the subject."},
	{InvalidRequest, codes.InvalidArgument, "request is invalid",
		"The request breaks a validation rule of the API; the BadRequest detail lists every field violation."},
	{MalformedRequest, codes.InvalidArgument, "request could not be decoded",
		"The body is not a valid encoding of the request message: truncated or invalid protobuf, invalid UTF-8 in a string, nesting deeper than any request has, JSON that does not fit the message, or (HTTPS gateway) a body that is not `application/json`. When the broker can tell which field is broken, the BadRequest detail and the ErrorInfo metadata `field` name it (its path in proto names, e.g. `subject.birth_name`). The call is refused before validation, and still traced."},
	{InvalidRecipient, codes.InvalidArgument, "recipient is not a valid siret",
		"`access_context.recipient` must be a SIRET: 14 digits with a valid Luhn checksum (La Poste's digit-sum rule for SIREN 356000000). The BadRequest detail names the field."},
	{InvalidSubject, codes.InvalidArgument, "subject identity is invalid",
		"The subject identity breaks a validation rule (names, sex, birth date, COG codes); the BadRequest detail lists the fields."},
	{InvalidFieldMask, codes.InvalidArgument, "field mask names an unknown field",
		"A `field_mask` path is not a personal-data field of the response message."},
	{RateLimited, codes.ResourceExhausted, "rate limit exceeded",
		"Your body exceeded the rate of its grant for this service. RetryInfo says when to retry."},
	{DailyQuotaExceeded, codes.ResourceExhausted, "daily quota exceeded",
		"Your body used the daily cap of its grant for this service. Counters reset at midnight, Paris time; RetryInfo says when."},
	{DuplicateInFlight, codes.Aborted, "the same call is already in progress",
		"An identical call (same consumer, method and subject) is still being answered; the broker does not ask the source twice. Wait for the first answer."},
	{Throttled, codes.ResourceExhausted, "calls are throttled after abnormal use",
		"The broker detected abnormal use by your body (enumeration of subjects, volume beyond the declared one) and the grant's anomaly policy throttles it. RetryInfo says when the throttle ends; the operator sees the anomaly in `relaisctl anomalies list`."},
	{QuotaUnavailable, codes.Unavailable, "quota state is unavailable",
		"The shared store of the daily quotas and of the duplicate guard did not answer, so the call is refused rather than counted wrong (fail closed). Retry later."},
	{RegistryUnavailable, codes.Unavailable, "the registry is unavailable",
		"Admin API only: the registry's database did not answer, so the change was not made (nothing was half-applied). Calls to the data API keep being decided on the last registry snapshot. Retry when the database is back."},
	{RequestTooLarge, codes.ResourceExhausted, "request is too large",
		"The request message is larger than the broker accepts (64 KiB; typed requests are a few hundred bytes). The ErrorInfo metadata `limit_bytes` gives the limit; over HTTPS the status is 413. Messages beyond the transport bound (1 MiB) are refused by the gRPC transport itself, without this detail, but still traced."},
	{SubjectNotFound, codes.NotFound, "subject not found",
		"The source knows no person with this identity."},
	{SubjectNotIdentifiable, codes.FailedPrecondition, "subject cannot be identified with certainty",
		"The identity matches several people, or is too incomplete for the source to decide. Add the birth place or use a domain identifier. Also answered, before the identity provider is asked, to a `citizen_access_token` on a service that designates its subjects by a domain identifier only (France Travail payments): a login gives a civil identity, which designates nobody there."},
	{SourceUnavailable, codes.Unavailable, "source is unavailable",
		"The source administration's system is down, in maintenance or refused the call. RetryInfo says when to retry when the source said so."},
	{SourceTimeout, codes.DeadlineExceeded, "source did not answer in time",
		"The source did not answer before the deadline (the caller's or the source's configured timeout, whichever is shorter)."},
	{SourceInvalidResponse, codes.Internal, "source answered an invalid response",
		"The source answered something that does not fit the typed response; nothing is returned. The operator is alerted through the logs."},
	{ServiceNotConfigured, codes.Unimplemented, "service has no source configured",
		"The broker knows this service but the operator configured no source adapter for it."},
	{DesignationNotGranted, codes.PermissionDenied, "the grant does not allow this way of designating the subject",
		"Grants say, per service, whether the subject may be designated by a typed identity (`subject`, `identity`, `ine`, `france_travail_id`), by the citizen's own login (`citizen_access_token`), or both; typed only unless the operator says otherwise. The call used a mode none of your valid grants for this service and purpose allows. It is refused before the identity provider or any source is called."},
	{CitizenLoginNotConfigured, codes.Unimplemented, "citizen login is not configured",
		"The call designates its subject by `citizen_access_token` but the operator configured no OpenID provider (`citizen_login.providers`). Use a typed identity, or ask the operator."},
	{IdentityProviderUnavailable, codes.Unavailable, "identity provider is unavailable",
		"The citizen's identity provider could not be reached, was too slow (2 s by default), answered a server error, or its discovery document or key set could not be read. Nothing was sent to any source. RetryInfo says when to retry; the token stays usable until it expires."},
	{IdentityProviderInvalidResponse, codes.Internal, "identity provider answered an invalid response",
		"The identity provider answered the userinfo request with something the broker cannot trust: not a signed JWT, signed with an algorithm not accepted, or with a signature no key of the provider's key set verifies. No identity is used and no source is called; the operator is alerted through the logs (a misconfigured provider, or someone between the broker and it)."},
	{CitizenTokenInvalid, codes.InvalidArgument, "citizen access token is invalid",
		"The identity provider does not know `citizen_access_token` (unknown, revoked, malformed, or issued by another provider than the ones configured), or its answer was issued in the future. Have the citizen log in again. Like every `citizen_token_*` reason it is InvalidArgument, not Unauthenticated: the token designates the subject, it is an argument of the call; your own credential (the mTLS certificate) was accepted, and retrying with it alone cannot help. The BadRequest detail names the field, never its value."},
	{CitizenTokenExpired, codes.InvalidArgument, "citizen access token has expired",
		"The citizen's access token expired (the provider said so, or the `exp` of its answer is past, beyond the configured clock skew). Have the citizen log in again; access tokens live a few minutes, use them right after the login."},
	{CitizenTokenWrongAudience, codes.InvalidArgument, "citizen access token was not issued for relais",
		"The token is valid but its `aud` does not include the audience Relais is registered under with the provider (its `client_id`). Your portal's OpenID client must be registered with that audience (FranceConnect: the data-provider scopes of Relais)."},
	{CitizenTokenWrongIssuer, codes.InvalidArgument, "citizen access token comes from another identity provider",
		"The token (a JWT access token) or the provider's answer names an issuer that is not a provider configured in Relais. Log the citizen in with a provider Relais accepts."},
	{CitizenLoginTooWeak, codes.InvalidArgument, "citizen login level is not accepted",
		"The `acr` of the citizen's login is not one of the levels the operator accepts for this provider (e.g. `eidas1`). Request an accepted level in the authorization request (`acr_values`)."},
	{CitizenClaimsInvalid, codes.InvalidArgument, "citizen identity claims are missing or invalid",
		"The provider's answer lacks a pivot identity claim (`given_name`, `family_name`, `birthdate`, `gender`, `birthcountry`, and `birthplace` for people born in France) or one is ill-formed. The ErrorInfo metadata `claim` names it (never its value). Ask for the `openid identite_pivot` scopes (or each claim's scope) at login."},
	{MethodNotFound, codes.NotFound, "no such method",
		"HTTPS gateway: the path names no method. Methods are served at `POST /<package.Service>/<Method>`, e.g. `POST /relais.familyquotient.v1.FamilyQuotientService/GetFamilyQuotient`; the OpenAPI document at `/docs/openapi.json` lists them."},
	{MethodNotAllowed, codes.Unimplemented, "method must be called with post",
		"HTTPS gateway: a method was called with another HTTP verb than POST. The status is 405 with `Allow: POST`."},
	{AuditUnavailable, codes.Unavailable, "access could not be traced",
		"The audit record could not be made durable, so no data is returned (fail closed). Retry later."},
	{NotFound, codes.NotFound, "no such object",
		"Admin API: the consumer, grant or credential named does not exist."},
	{AlreadyExists, codes.AlreadyExists, "object already exists",
		"Admin API: the consumer is already registered."},
	{Cancelled, codes.Canceled, "call was cancelled by the caller",
		"The caller cancelled the call or its deadline passed before the broker could answer; the attempt is still traced."},
	{Internal, codes.Internal, "internal error",
		"An unexpected error; the request id in the response header `x-request-id` lets the operator find it in the logs."},
}

var byReason = func() map[Reason]Entry {
	m := make(map[Reason]Entry, len(entries))
	for _, e := range entries {
		m[e.Reason] = e
	}
	return m
}()

// Entries returns the catalogue in documentation order.
func Entries() []Entry { return append([]Entry(nil), entries...) }

// Lookup returns the entry for reason.
func Lookup(reason Reason) (Entry, bool) {
	e, ok := byReason[reason]
	return e, ok
}

// Error is a catalogued error on its way to the gRPC edge.
type Error struct {
	Reason     Reason
	Violations []*errdetails.BadRequest_FieldViolation
	RetryAfter time.Duration
	// Cause is kept for logs; it is never sent to the caller.
	Cause error
	// Detail, when set, is appended to the message the caller reads. Only
	// for text built by Relais itself that holds no personal data (the
	// admin API's precise validation messages).
	Detail string
	// Metadata goes into the ErrorInfo, for machine-readable facts (a
	// limit, a field path); the same rule as Detail applies.
	Metadata map[string]string
}

// New returns an error with the given reason. An unknown reason is a
// programming error and becomes Internal.
func New(reason Reason) *Error {
	if _, ok := byReason[reason]; !ok {
		return &Error{Reason: Internal, Cause: fmt.Errorf("uncatalogued reason %q", reason)}
	}
	return &Error{Reason: reason}
}

// Wrap returns an error with the given reason that keeps cause for logs.
func Wrap(reason Reason, cause error) *Error {
	e := New(reason)
	if e.Cause == nil {
		e.Cause = cause
	}
	return e
}

// WithRetryAfter sets the RetryInfo delay.
func (e *Error) WithRetryAfter(d time.Duration) *Error {
	e.RetryAfter = d
	return e
}

// WithDetail sets Detail.
func (e *Error) WithDetail(d string) *Error {
	e.Detail = d
	return e
}

// WithMetadata adds key=value to the ErrorInfo metadata.
func (e *Error) WithMetadata(key, value string) *Error {
	if e.Metadata == nil {
		e.Metadata = map[string]string{}
	}
	e.Metadata[key] = value
	return e
}

// WithViolations sets the BadRequest field violations.
func (e *Error) WithViolations(v []*errdetails.BadRequest_FieldViolation) *Error {
	e.Violations = v
	return e
}

// Error implements error.
func (e *Error) Error() string {
	entry := byReason[e.Reason]
	if e.Cause != nil {
		return string(e.Reason) + ": " + entry.Message + ": " + e.Cause.Error()
	}
	return string(e.Reason) + ": " + entry.Message
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Cause }

// Code is the gRPC code of the error.
func (e *Error) Code() codes.Code { return byReason[e.Reason].Code }

// Status builds the gRPC status the caller receives: the catalogue message,
// an ErrorInfo and the optional BadRequest and RetryInfo details. The cause
// is never included.
func (e *Error) Status() *status.Status {
	entry := byReason[e.Reason]
	msg := entry.Message
	if e.Detail != "" {
		msg += ": " + e.Detail
	}
	st := status.New(entry.Code, msg)
	details := []protoadapt.MessageV1{&errdetails.ErrorInfo{Reason: string(e.Reason), Domain: Domain, Metadata: e.Metadata}}
	if len(e.Violations) > 0 {
		details = append(details, &errdetails.BadRequest{FieldViolations: e.Violations})
	}
	if e.RetryAfter > 0 {
		details = append(details, &errdetails.RetryInfo{RetryDelay: durationpb.New(e.RetryAfter)})
	}
	withDetails, err := st.WithDetails(details...)
	if err != nil {
		return st
	}
	return withDetails
}

// GRPCStatus lets status.FromError recognise catalogued errors.
func (e *Error) GRPCStatus() *status.Status { return e.Status() }

// From returns the catalogued error inside err, or Internal wrapping err.
func From(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return Wrap(Internal, err)
}

// Markdown renders the catalogue as the docs/errors.md page.
func Markdown() string {
	var b strings.Builder
	b.WriteString("# Error catalogue\n\n")
	b.WriteString("<!-- Generated from broker/errcat by `make generate`. Do not edit. -->\n\n")
	b.WriteString("Every error Relais returns is a gRPC status whose details hold a\n")
	b.WriteString("`google.rpc.ErrorInfo` with domain `" + Domain + "` and one of the reasons below.\n")
	b.WriteString("Invalid input also carries a `google.rpc.BadRequest` listing each field\n")
	b.WriteString("violation; rate limits and unavailable sources carry a `google.rpc.RetryInfo`\n")
	b.WriteString("when a retry time is known. Messages are fixed per reason and never hold\n")
	b.WriteString("personal data.\n\n")
	b.WriteString("| reason | gRPC code | message | when and what to do |\n|---|---|---|---|\n")
	for _, e := range entries {
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", e.Reason, codeName(e.Code), e.Message, e.Doc)
	}
	return b.String()
}

func codeName(c codes.Code) string {
	s := c.String()
	// codes.Code.String gives "Unauthenticated"; the gRPC docs use UNAUTHENTICATED.
	var out []rune
	for i, r := range s {
		if i > 0 && r >= 'A' && r <= 'Z' {
			out = append(out, '_')
		}
		out = append(out, r)
	}
	return strings.ToUpper(string(out))
}
