#!/usr/bin/python3
"""Mint Fernet token test vectors with Keystone's own TokenFormatter.

Owns: producing test/fixtures/keystone-vectors.json, the ground truth the
TypeScript decoder is checked against. Every vector is created with
``keystone.token.token_formatters.TokenFormatter`` (or, for the legacy msgpack
vectors, with Keystone's own payload classes + ``TokenFormatter.pack``) and its
``expected`` field is exactly what ``TokenFormatter().validate_token(token)``
returns, re-validated against the final key repository before output.

Run with Debian's interpreter (the one that has the OpenStack packages)::

    /usr/bin/python3 test/harness/mint_vectors.py \\
        [--key-repository DIR] [--out test/fixtures/keystone-vectors.json]

No keystone.conf is read; configuration is set programmatically.

Layout of the key ring (max_active_keys = 3):
  * an empty/missing repository is initialised (keys 0, 1) and rotated once,
    giving staged 0, secondary 1, primary 2;
  * batch "k1" is minted (signed by the primary at that time);
  * the repository is rotated (0 -> new primary, oldest secondary purged);
  * batch "k2" is minted with the new primary.
The output's ``keys`` are the final repository contents; all vectors validate
against them. Besides the requested fields, each vector records
``signing_key`` (the key file name that decrypts it, found by trying every
key), ``msgpack_format`` ('bin' = msgpack >= 1.0 as Keystone writes today,
'legacy-raw' = use_bin_type=False) and ``expires_at_input`` (the expiry string
given to Keystone, with microseconds; ``expected.expires_at`` has them
truncated to .000000 by keystone.common.utils.isotime).
"""

import argparse
import datetime
import importlib.metadata
import json
import os
import random
import sys
import tempfile
import time
import uuid

from cryptography import fernet
import msgpack

import keystone.conf
from keystone.common import fernet_utils
from keystone.token import token_formatters as tf
from keystone.token.provider import random_urlsafe_str

CONF = keystone.conf.CONF

DEFAULT_METHODS = ['external', 'password', 'token', 'oauth1', 'mapped',
                   'application_credential']
TOTP_METHODS = DEFAULT_METHODS + ['totp']
MAX_ACTIVE_KEYS = 3
EXPECTED_FIELDS = (
    'user_id', 'methods', 'audit_ids', 'system', 'domain_id', 'project_id',
    'trust_id', 'federated_group_ids', 'identity_provider_id', 'protocol_id',
    'access_token_id', 'app_cred_id', 'issued_at', 'expires_at',
)

# Ids used across vectors. UUID hex ids are packed as 16 raw bytes by Keystone;
# everything else is packed as a (False, str) pair.
LDAP_DN = 'cn=José Müller,ou=users,dc=example,dc=org'
NON_ASCII_ID = '用户-ü'
NON_UUID_PROJECT = 'proj_non_uuid-42'


def uid():
    return uuid.uuid4().hex


def expires(rng, delta_s=3600, micro=None):
    """Return an expiry string like Keystone's: '%Y-%m-%dT%H:%M:%S.%fZ'."""
    if micro is None:
        micro = rng.randint(1, 999999)
    base = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    at = (base + datetime.timedelta(seconds=delta_s)).replace(
        microsecond=micro)
    return at.strftime('%Y-%m-%dT%H:%M:%S.%fZ')


def audit_ids(n):
    return [random_urlsafe_str() for _ in range(n)]


def configure(key_repository, methods):
    CONF.set_override('key_repository', key_repository, group='fernet_tokens')
    CONF.set_override('max_active_keys', MAX_ACTIVE_KEYS,
                      group='fernet_tokens')
    CONF.set_override('default_domain_id', 'default', group='identity')
    CONF.set_override('methods', methods, group='auth')


def prepare_repository(key_repository):
    utils = fernet_utils.FernetUtils(key_repository, MAX_ACTIVE_KEYS,
                                     'fernet_tokens')
    os.makedirs(key_repository, mode=0o700, exist_ok=True)
    _, keys = utils._get_key_files(key_repository)
    if not keys:
        # creates key 0, rotates: {0 staged, 1 primary}
        utils.initialize_key_repository()
        # one more rotation: {0 staged, 1 secondary, 2 primary}
        utils.rotate_keys()
    return utils


def read_keys(key_repository):
    out = {}
    for name in sorted(os.listdir(key_repository), key=lambda n: (len(n), n)):
        path = os.path.join(key_repository, name)
        if name.isdigit() and os.path.isfile(path):
            with open(path) as f:
                out[name] = f.read()
    return out


def signing_key(token, keys):
    padded = tf.TokenFormatter.restore_padding(token).encode('utf-8')
    found = [name for name, key in keys.items()
             if _decrypts(key, padded)]
    if len(found) != 1:
        raise RuntimeError('token decrypts with keys %r' % found)
    return found[0]


def _decrypts(key, padded_token):
    try:
        fernet.Fernet(key.encode('utf-8')).decrypt(padded_token)
        return True
    except fernet.InvalidToken:
        return False


def to_expected(result):
    if len(result) != len(EXPECTED_FIELDS):
        raise RuntimeError('unexpected validate_token result: %r' % (result,))
    return dict(zip(EXPECTED_FIELDS, result))


def spec(name, payload_class, **kw):
    kw.setdefault('audit_ids', audit_ids(1))
    return {'name': name, 'payload_class': payload_class, 'kw': kw}


def core_specs(rng, batch):
    """Vectors for payload versions 0..9 with varied ids (default methods)."""
    P = tf
    s = []
    # v0 unscoped
    s.append(spec('unscoped-uuid-user', P.UnscopedPayload, user_id=uid(),
                  methods=['password'], expires_at=expires(rng)))
    s.append(spec('unscoped-ldap-dn-user-2-audit', P.UnscopedPayload,
                  user_id=LDAP_DN, methods=['password', 'token'],
                  expires_at=expires(rng, micro=0), audit_ids=audit_ids(2)))
    s.append(spec('unscoped-non-ascii-user', P.UnscopedPayload,
                  user_id=NON_ASCII_ID, methods=['external'],
                  expires_at=expires(rng)))
    # v1 domain scoped
    s.append(spec('domain-uuid-domain', P.DomainScopedPayload, user_id=uid(),
                  methods=['password'], domain_id=uid(),
                  expires_at=expires(rng)))
    s.append(spec('domain-default-domain-ldap-user', P.DomainScopedPayload,
                  user_id=LDAP_DN, methods=['password', 'token'],
                  domain_id='default', expires_at=expires(rng, micro=0),
                  audit_ids=audit_ids(2)))
    # v2 project scoped
    s.append(spec('project-uuid', P.ProjectScopedPayload, user_id=uid(),
                  methods=['password'], project_id=uid(),
                  expires_at=expires(rng)))
    s.append(spec('project-non-uuid-project', P.ProjectScopedPayload,
                  user_id=uid(), methods=['password', 'token'],
                  project_id=NON_UUID_PROJECT, expires_at=expires(rng),
                  audit_ids=audit_ids(2)))
    s.append(spec('project-non-ascii-user', P.ProjectScopedPayload,
                  user_id=NON_ASCII_ID, methods=['token'], project_id=uid(),
                  expires_at=expires(rng, delta_s=86400, micro=999999)))
    s.append(spec('project-expiry-1us', P.ProjectScopedPayload, user_id=uid(),
                  methods=['password'], project_id=uid(),
                  expires_at=expires(rng, micro=1)))
    # v3 trust scoped
    s.append(spec('trust-uuid', P.TrustScopedPayload, user_id=uid(),
                  methods=['password'], project_id=uid(), trust_id=uid(),
                  expires_at=expires(rng)))
    s.append(spec('trust-non-uuid-project-2-audit', P.TrustScopedPayload,
                  user_id=LDAP_DN, methods=['password', 'token'],
                  project_id=NON_UUID_PROJECT, trust_id=uid(),
                  expires_at=expires(rng, micro=0), audit_ids=audit_ids(2)))
    # v4 federated unscoped
    s.append(spec('federated-unscoped-0-groups', P.FederatedUnscopedPayload,
                  user_id=uid(), methods=['mapped'], federated_group_ids=[],
                  identity_provider_id=uid(), protocol_id='saml2',
                  expires_at=expires(rng)))
    s.append(spec('federated-unscoped-1-group-non-uuid-idp',
                  P.FederatedUnscopedPayload, user_id=uid(),
                  methods=['mapped'], federated_group_ids=[{'id': uid()}],
                  identity_provider_id='idp.example.org',
                  protocol_id='openid', expires_at=expires(rng)))
    s.append(spec('federated-unscoped-mixed-groups',
                  P.FederatedUnscopedPayload, user_id=LDAP_DN,
                  methods=['mapped', 'token'],
                  federated_group_ids=[{'id': uid()}, {'id': 'admins'},
                                       {'id': uid()}, {'id': 'grüppe-7'}],
                  identity_provider_id=uid(), protocol_id='saml2',
                  expires_at=expires(rng, micro=0), audit_ids=audit_ids(2)))
    # v5 federated project scoped
    s.append(spec('federated-project-1-group', P.FederatedProjectScopedPayload,
                  user_id=uid(), methods=['mapped'], project_id=uid(),
                  federated_group_ids=[{'id': uid()}],
                  identity_provider_id=uid(), protocol_id='openid',
                  expires_at=expires(rng)))
    s.append(spec('federated-project-non-uuid-project-groups',
                  P.FederatedProjectScopedPayload, user_id=NON_ASCII_ID,
                  methods=['mapped', 'token'], project_id=NON_UUID_PROJECT,
                  federated_group_ids=[{'id': 'g1'}, {'id': uid()}],
                  identity_provider_id='corp-idp', protocol_id='saml2',
                  expires_at=expires(rng), audit_ids=audit_ids(2)))
    # v6 federated domain scoped
    s.append(spec('federated-domain-uuid-domain-0-groups',
                  P.FederatedDomainScopedPayload, user_id=uid(),
                  methods=['mapped'], domain_id=uid(), federated_group_ids=[],
                  identity_provider_id=uid(), protocol_id='saml2',
                  expires_at=expires(rng)))
    s.append(spec('federated-domain-default-domain-groups',
                  P.FederatedDomainScopedPayload, user_id=uid(),
                  methods=['mapped'], domain_id='default',
                  federated_group_ids=[{'id': uid()}, {'id': 'ops'},
                                       {'id': uid()}],
                  identity_provider_id='idp.example.org',
                  protocol_id='openid', expires_at=expires(rng, micro=0)))
    # v7 oauth1
    s.append(spec('oauth1-uuid-access-token', P.OauthScopedPayload,
                  user_id=uid(), methods=['oauth1'], project_id=uid(),
                  access_token_id=uid(), expires_at=expires(rng)))
    s.append(spec('oauth1-non-uuid-access-token', P.OauthScopedPayload,
                  user_id=LDAP_DN, methods=['oauth1', 'token'],
                  project_id=NON_UUID_PROJECT,
                  access_token_id='at_non-uuid_0001',
                  expires_at=expires(rng), audit_ids=audit_ids(2)))
    # v8 system
    s.append(spec('system-all', P.SystemScopedPayload, user_id=uid(),
                  methods=['password'], system='all', expires_at=expires(rng)))
    s.append(spec('system-all-non-ascii-user-2-audit', P.SystemScopedPayload,
                  user_id=NON_ASCII_ID, methods=['password', 'token'],
                  system='all', expires_at=expires(rng, micro=0),
                  audit_ids=audit_ids(2)))
    # v9 application credential
    s.append(spec('app-cred-uuid', P.ApplicationCredentialScopedPayload,
                  user_id=uid(), methods=['application_credential'],
                  project_id=uid(), app_cred_id=uid(),
                  expires_at=expires(rng)))
    s.append(spec('app-cred-token-rescoped-non-uuid',
                  P.ApplicationCredentialScopedPayload, user_id=LDAP_DN,
                  methods=['token', 'application_credential'],
                  project_id=NON_UUID_PROJECT, app_cred_id='appcred-xyz',
                  expires_at=expires(rng), audit_ids=audit_ids(2)))
    for v in s:
        v['name'] = '%s/%s' % (batch, v['name'])
    return s


def pseudo_method_specs(rng, batch):
    """Debian's keystone 22.0.2-0+deb12u6 encodes 'ec2credential' (1 << 32)
    and 'oauth2_credential' (1 << 33) as fixed high method bits."""
    s = [
        spec('project-ec2credential-method', tf.ProjectScopedPayload,
             user_id=uid(), methods=['ec2credential'], project_id=uid(),
             expires_at=expires(rng)),
        spec('project-oauth2-credential-and-password',
             tf.ProjectScopedPayload, user_id=uid(),
             methods=['oauth2_credential', 'password'], project_id=uid(),
             expires_at=expires(rng)),
    ]
    for v in s:
        v['name'] = '%s/%s' % (batch, v['name'])
    return s


def totp_specs(rng, batch):
    P = tf
    s = [
        spec('unscoped-password-totp', P.UnscopedPayload, user_id=uid(),
             methods=['password', 'totp'], expires_at=expires(rng)),
        spec('project-totp-only', P.ProjectScopedPayload, user_id=uid(),
             methods=['totp'], project_id=uid(), expires_at=expires(rng)),
        spec('domain-default-password-token-totp', P.DomainScopedPayload,
             user_id=LDAP_DN, methods=['password', 'token', 'totp'],
             domain_id='default', expires_at=expires(rng, micro=0),
             audit_ids=audit_ids(2)),
        spec('system-all-totp', P.SystemScopedPayload, user_id=uid(),
             methods=['totp', 'password'], system='all',
             expires_at=expires(rng)),
        spec('app-cred-all-methods', P.ApplicationCredentialScopedPayload,
             user_id=uid(), methods=list(TOTP_METHODS), project_id=uid(),
             app_cred_id=uid(), expires_at=expires(rng)),
        spec('project-password-no-totp', P.ProjectScopedPayload,
             user_id=uid(), methods=['password'],
             project_id=NON_UUID_PROJECT, expires_at=expires(rng)),
    ]
    for v in s:
        v['name'] = '%s/%s' % (batch, v['name'])
    return s


def mint(formatter, s):
    kw = dict(s['kw'])
    return formatter.create_token(
        kw.pop('user_id'), kw.pop('expires_at'), kw.pop('audit_ids'),
        s['payload_class'], **kw)


def mint_legacy_msgpack(formatter, s):
    """Pack with msgpack's pre-1.0 format (no bin type): Keystone validates
    these via its ``unpackb(..., raw=True)`` fallback."""
    kw = s['kw']
    cls = s['payload_class']
    for _ in range(100):
        payload = cls.assemble(
            kw['user_id'], kw.get('methods'), kw.get('system'),
            kw.get('project_id'), kw.get('domain_id'), kw['expires_at'],
            kw['audit_ids'], kw.get('trust_id'),
            kw.get('federated_group_ids'), kw.get('identity_provider_id'),
            kw.get('protocol_id'), kw.get('access_token_id'),
            kw.get('app_cred_id'))
        packed = msgpack.packb((cls.version,) + payload, use_bin_type=False)
        try:
            msgpack.unpackb(packed)
        except UnicodeDecodeError:
            return formatter.pack(packed)
        # every raw string happened to be valid UTF-8: retry with new
        # audit ids so the legacy raw=True fallback path is exercised
        kw['audit_ids'] = audit_ids(len(kw['audit_ids']))
    raise RuntimeError('could not produce a non-UTF-8 legacy payload')


def legacy_specs(rng, batch):
    P = tf
    s = [
        spec('legacy-msgpack-project-uuid', P.ProjectScopedPayload,
             user_id=uid(), methods=['password'], project_id=uid(),
             expires_at=expires(rng)),
        spec('legacy-msgpack-domain-default', P.DomainScopedPayload,
             user_id=uid(), methods=['password', 'token'],
             domain_id='default', expires_at=expires(rng),
             audit_ids=audit_ids(2)),
        spec('legacy-msgpack-system-all', P.SystemScopedPayload,
             user_id=LDAP_DN, methods=['password'], system='all',
             expires_at=expires(rng)),
    ]
    for v in s:
        v['name'] = '%s/%s' % (batch, v['name'])
    return s


def run_batch(formatter, specs, methods, key_repository, legacy=False):
    configure(key_repository, methods)
    out = []
    for s in specs:
        token = (mint_legacy_msgpack if legacy else mint)(formatter, s)
        result = formatter.validate_token(token)
        out.append({
            'name': s['name'],
            'payload_version': s['payload_class'].version,
            'auth_methods': list(methods),
            'msgpack_format': 'legacy-raw' if legacy else 'bin',
            'token': token,
            # the expiry string given to Keystone; validate_token's
            # expires_at drops the microseconds (ks_utils.isotime)
            'expires_at_input': s['kw']['expires_at'],
            'expected': to_expected(result),
        })
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--key-repository', default=None,
                    help='fernet key repository (created and initialised if '
                         'missing/empty; default: a temporary directory '
                         'removed afterwards)')
    ap.add_argument('--out', default='-', help='output file (default stdout)')
    ap.add_argument('--seed', type=int, default=None,
                    help='seed for the random microseconds (ids and audit '
                         'ids are always random)')
    args = ap.parse_args(argv)

    rng = random.Random(args.seed)
    if args.key_repository is None:
        with tempfile.TemporaryDirectory(prefix='keystone-edge-vectors-') as d:
            return mint_all(os.path.join(d, 'fernet-keys'), args.out, rng)
    return mint_all(os.path.abspath(args.key_repository), args.out, rng)


def mint_all(key_repository, out, rng):

    keystone.conf.configure()
    CONF([], project='keystone', default_config_files=[],
         default_config_dirs=[])
    configure(key_repository, DEFAULT_METHODS)

    utils = prepare_repository(key_repository)
    formatter = tf.TokenFormatter()

    vectors = []
    # batch k1: signed by the primary of the initial 3-key ring
    vectors += run_batch(formatter, core_specs(rng, 'k1'), DEFAULT_METHODS,
                         key_repository)
    vectors += run_batch(formatter, pseudo_method_specs(rng, 'k1'),
                         DEFAULT_METHODS, key_repository)
    vectors += run_batch(formatter, legacy_specs(rng, 'k1'), DEFAULT_METHODS,
                         key_repository, legacy=True)

    # rotate: a new primary signs batch k2; batch k1's key stays a secondary
    utils.rotate_keys()
    vectors += run_batch(formatter, core_specs(rng, 'k2'), DEFAULT_METHODS,
                         key_repository)
    vectors += run_batch(formatter, totp_specs(rng, 'k2-totp'), TOTP_METHODS,
                         key_repository)

    # re-validate everything against the final ring, with each vector's own
    # auth-method configuration, and record which key decrypts it
    keys = read_keys(key_repository)
    for v in vectors:
        configure(key_repository, v['auth_methods'])
        again = to_expected(formatter.validate_token(v['token']))
        if again != v['expected']:
            raise RuntimeError('%s: re-validation differs: %r != %r'
                               % (v['name'], again, v['expected']))
        v['signing_key'] = signing_key(v['token'], keys)

    doc = {
        'generated_at': time.time(),
        'keystone_version': importlib.metadata.version('keystone'),
        'msgpack_version': importlib.metadata.version('msgpack'),
        'default_domain_id': 'default',
        'max_active_keys': MAX_ACTIVE_KEYS,
        'keys': keys,
        'vectors': vectors,
    }
    text = json.dumps(doc, indent=1, ensure_ascii=False) + '\n'
    if out == '-':
        sys.stdout.write(text)
    else:
        with open(out, 'w', encoding='utf-8') as f:
            f.write(text)
        print('wrote %d vectors to %s (keys: %s)' % (
            len(vectors), out, ', '.join(keys)), file=sys.stderr)
    return 0


if __name__ == '__main__':
    sys.exit(main())
