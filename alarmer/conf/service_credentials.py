"""Options of the ``[service_credentials]`` section.

alarmer's own Keystone user, as Aodh names it: the trustee of the trusts
behind ``trust+http(s)://`` actions, which exchanges a trust id for a
trust-scoped token at delivery.  The options are keystoneauth1's:
``auth_type`` chooses the authentication plugin, whose own options
(for ``password``: ``auth_url``, ``username``, ``password``,
``user_domain_id``, ``project_name``, ``project_domain_id``...) are read
from this section once the plugin is loaded; the session's TLS and
timeout options; plus ``interface`` and ``region_name``, which choose
Keystone's endpoint in the catalog.
"""

from keystoneauth1 import loading
from oslo_config import cfg

GROUP = "service_credentials"

OPTS: list[cfg.Opt] = [
    *loading.get_auth_common_conf_options(),
    *loading.get_session_conf_options(),
    cfg.StrOpt(
        "interface",
        default="public",
        choices=(
            "public",
            "internal",
            "admin",
            "publicURL",
            "internalURL",
            "adminURL",
        ),
        help="Which endpoint of Keystone's catalog alarmer calls to "
        "create, use and delete trusts.",
    ),
    cfg.StrOpt(
        "region_name",
        help="The region of the endpoints alarmer looks up in the catalog.",
    ),
]
