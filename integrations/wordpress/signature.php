<?php
/**
 * Standard Webhooks signing (https://www.standardwebhooks.com/), as syndicator checks it:
 * webhook-signature = "v1," . base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}")), where key is
 * the base64 after "whsec_" in the secret. Plain PHP, no WordPress, so it can be tested alone.
 */

if (!function_exists('syndicator_webhook_signature')) {
    /** The webhook-signature header value for one message. */
    function syndicator_webhook_signature(string $secret, string $id, int $timestamp, string $body): string
    {
        $encoded = strpos($secret, 'whsec_') === 0 ? substr($secret, 6) : $secret;
        $key = base64_decode($encoded, true);
        if ($key === false || $key === '') {
            throw new InvalidArgumentException('the webhook secret is not whsec_ followed by base64');
        }
        $mac = hash_hmac('sha256', $id . '.' . $timestamp . '.' . $body, $key, true);
        return 'v1,' . base64_encode($mac);
    }

    /** All the headers of one signed call: a fresh webhook-id, the time now, the signature. */
    function syndicator_webhook_headers(string $secret, string $body): array
    {
        $id = 'msg_' . bin2hex(random_bytes(16));
        $timestamp = time();
        return array(
            'webhook-id' => $id,
            'webhook-timestamp' => (string) $timestamp,
            'webhook-signature' => syndicator_webhook_signature($secret, $id, $timestamp, $body),
            'content-type' => 'application/json',
        );
    }
}
