<?php
/**
 * Plugin Name: syndicator publish webhook
 * Description: Tells syndicator the moment a post is published (or updated, or unpublished), so it is posted to your channels within seconds instead of at the next poll. Signed the Standard Webhooks way.
 * Version: 1.1.0
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

/** Which event a status change is: published, updated, unpublished, trashed, or none. */
function syndicator_webhook_event(string $new_status, string $old_status): string
{
    if ($new_status === 'publish') {
        return $old_status === 'publish' ? 'post.updated' : 'post.published';
    }
    if ($old_status !== 'publish') {
        return '';
    }
    return $new_status === 'trash' ? 'post.trashed' : 'post.unpublished';
}

/**
 * The call's body: the event and how syndicator finds the post. The permalink of a post that
 * left "publish" may no longer be the one the feed showed (a trashed post's slug gets
 * "__trashed"), so the guid (WordPress's `https://site/?p=ID`, fixed when the post was created)
 * and the shortlink go along: syndicator matches any of them.
 */
function syndicator_webhook_body(string $event, $post): string
{
    return (string) wp_json_encode(array(
        'type' => $event,
        'id' => $post->ID,
        'url' => get_permalink($post),
        'guid' => (string) $post->guid,
        'shortlink' => home_url('/?p=' . $post->ID),
    ));
}

/** Sign and send one call; never blocks publishing. */
function syndicator_webhook_send(string $event, $post): void
{
    list($url, $secret) = syndicator_webhook_config();
    if ($event === '' || $url === '' || $secret === '') {
        return;
    }
    $body = syndicator_webhook_body($event, $post);
    try {
        $headers = syndicator_webhook_headers($secret, $body);
    } catch (InvalidArgumentException $e) {
        error_log('syndicator webhook: ' . $e->getMessage());
        return;
    }
    // Not blocking: publishing never waits for syndicator; a lost call is caught by its polling.
    wp_remote_post($url, array('body' => $body, 'headers' => $headers, 'timeout' => 5, 'blocking' => false));
}

add_action('transition_post_status', function ($new_status, $old_status, $post) {
    if (!($post instanceof WP_Post) || $post->post_type !== 'post' || wp_is_post_revision($post)) {
        return;
    }
    syndicator_webhook_send(syndicator_webhook_event((string) $new_status, (string) $old_status), $post);
}, 10, 3);

// Deleted for good without passing through the trash (wp_delete_post with $force_delete, or
// EMPTY_TRASH_DAYS = 0): no status change is announced, so say it here, while the post exists.
add_action('before_delete_post', function ($post_id, $post = null) {
    $post = $post instanceof WP_Post ? $post : get_post($post_id);
    if ($post instanceof WP_Post && $post->post_type === 'post' && $post->post_status === 'publish') {
        syndicator_webhook_send('post.deleted', $post);
    }
}, 10, 2);

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
