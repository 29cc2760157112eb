<?php
/**
 * Plugin Name: syndicator publish webhook
 * Description: Tells syndicator the moment a post is published (or updated, or unpublished), so it is posted to your channels within seconds instead of at the next poll. Signed the Standard Webhooks way.
 * Version: 1.0.0
 * Requires PHP: 7.4
 * License: MIT
 *
 * Setup: run `syndicator feeds webhook FEED_ID` and paste its url and secret under
 * Settings → syndicator (or define SYNDICATOR_WEBHOOK_URL and SYNDICATOR_WEBHOOK_SECRET in
 * wp-config.php). The body only says "look now" and names the post's URL: syndicator reads the
 * post from the feed itself.
 */

if (!defined('ABSPATH')) {
    exit;
}

require_once __DIR__ . '/signature.php';

/** The configured URL and secret: wp-config.php constants first, then the settings page. */
function syndicator_webhook_config(): array
{
    $url = defined('SYNDICATOR_WEBHOOK_URL') ? SYNDICATOR_WEBHOOK_URL : get_option('syndicator_webhook_url', '');
    $secret = defined('SYNDICATOR_WEBHOOK_SECRET') ? SYNDICATOR_WEBHOOK_SECRET : get_option('syndicator_webhook_secret', '');
    return array(trim((string) $url), trim((string) $secret));
}

/** Which event a status change is: published, updated, unpublished, or none. */
function syndicator_webhook_event(string $new_status, string $old_status): string
{
    if ($new_status === 'publish') {
        return $old_status === 'publish' ? 'post.updated' : 'post.published';
    }
    return $old_status === 'publish' ? 'post.unpublished' : '';
}

add_action('transition_post_status', function ($new_status, $old_status, $post) {
    if (!($post instanceof WP_Post) || $post->post_type !== 'post' || wp_is_post_revision($post)) {
        return;
    }
    $event = syndicator_webhook_event((string) $new_status, (string) $old_status);
    list($url, $secret) = syndicator_webhook_config();
    if ($event === '' || $url === '' || $secret === '') {
        return;
    }
    $body = wp_json_encode(array('type' => $event, 'id' => $post->ID, 'url' => get_permalink($post)));
    try {
        $headers = syndicator_webhook_headers($secret, $body);
    } catch (InvalidArgumentException $e) {
        error_log('syndicator webhook: ' . $e->getMessage());
        return;
    }
    // Not blocking: publishing never waits for syndicator; a lost call is caught by its polling.
    wp_remote_post($url, array('body' => $body, 'headers' => $headers, 'timeout' => 5, 'blocking' => false));
}, 10, 3);

add_action('admin_init', function () {
    register_setting('syndicator_webhook', 'syndicator_webhook_url', array('sanitize_callback' => 'esc_url_raw'));
    register_setting('syndicator_webhook', 'syndicator_webhook_secret', array('sanitize_callback' => 'sanitize_text_field'));
});

add_action('admin_menu', function () {
    add_options_page('syndicator', 'syndicator', 'manage_options', 'syndicator-webhook', function () {
        ?>
        <div class="wrap"><h1>syndicator publish webhook</h1>
        <p>From <code>syndicator feeds webhook FEED_ID</code>.</p>
        <form method="post" action="options.php">
            <?php settings_fields('syndicator_webhook'); ?>
            <table class="form-table">
                <tr><th><label for="syndicator_webhook_url">url</label></th>
                    <td><input class="regular-text" id="syndicator_webhook_url" name="syndicator_webhook_url"
                        value="<?php echo esc_attr(get_option('syndicator_webhook_url', '')); ?>"></td></tr>
                <tr><th><label for="syndicator_webhook_secret">secret</label></th>
                    <td><input class="regular-text" type="password" id="syndicator_webhook_secret"
                        name="syndicator_webhook_secret" autocomplete="off"
                        value="<?php echo esc_attr(get_option('syndicator_webhook_secret', '')); ?>"></td></tr>
            </table>
            <?php submit_button(); ?>
        </form></div>
        <?php
    });
});
