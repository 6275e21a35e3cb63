// Builds CiphertextForRecipient the way KMS shapes it (docs/reference/nitro.md, "CiphertextForRecipient"):
// BER with indefinite lengths on the outer structures, EnvelopedData v2, one KeyTransRecipientInfo v2 with
// rid = SHA-256(SPKI), RSAES-OAEP SHA-256/MGF1-SHA-256, AES-256-CBC content as a constructed [0] of OCTET
// STRING chunks.
import {
  createCipheriv,
  createPublicKey,
  constants as cryptoConstants,
  publicEncrypt,
  randomBytes,
} from 'node:crypto';
import * as asn1js from 'asn1js';
import { spkiKeyId } from '../kms/cms.ts';

const indefinite = { isIndefiniteForm: true };

function sha256Alg(): asn1js.Sequence {
  return new asn1js.Sequence({
    value: [new asn1js.ObjectIdentifier({ value: '2.16.840.1.101.3.4.2.1' }), new asn1js.Null()],
  });
}

/** Encrypts `plaintext` to the RSA public key in `spkiDer`; returns the BER bytes. */
export function buildEnvelope(plaintext: Uint8Array, spkiDer: Uint8Array): Buffer {
  const publicKey = createPublicKey({ key: Buffer.from(spkiDer), format: 'der', type: 'spki' });
  if (publicKey.asymmetricKeyType !== 'rsa') throw new Error('the recipient public key is not an RSA key');
  const cek = randomBytes(32);
  const iv = randomBytes(16);
  const cipher = createCipheriv('aes-256-cbc', cek, iv);
  const encrypted = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  const encryptedKey = publicEncrypt(
    { key: publicKey, padding: cryptoConstants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' },
    cek,
  );
  const oaepParams = new asn1js.Sequence({
    value: [
      new asn1js.Constructed({ idBlock: { tagClass: 3, tagNumber: 0 }, value: [sha256Alg()] }),
      new asn1js.Constructed({
        idBlock: { tagClass: 3, tagNumber: 1 },
        value: [
          new asn1js.Sequence({
            value: [new asn1js.ObjectIdentifier({ value: '1.2.840.113549.1.1.8' }), sha256Alg()],
          }),
        ],
      }),
    ],
  });
  const ktri = new asn1js.Sequence({
    value: [
      new asn1js.Integer({ value: 2 }),
      new asn1js.Primitive({
        idBlock: { tagClass: 3, tagNumber: 0 },
        valueHex: new Uint8Array(spkiKeyId(spkiDer)),
      }),
      new asn1js.Sequence({
        value: [new asn1js.ObjectIdentifier({ value: '1.2.840.113549.1.1.7' }), oaepParams],
      }),
      new asn1js.OctetString({ valueHex: new Uint8Array(encryptedKey) }),
    ],
  });
  const encryptedContentInfo = new asn1js.Sequence({
    lenBlock: indefinite,
    value: [
      new asn1js.ObjectIdentifier({ value: '1.2.840.113549.1.7.1' }),
      new asn1js.Sequence({
        value: [
          new asn1js.ObjectIdentifier({ value: '2.16.840.1.101.3.4.1.42' }),
          new asn1js.OctetString({ valueHex: new Uint8Array(iv) }),
        ],
      }),
      new asn1js.Constructed({
        idBlock: { tagClass: 3, tagNumber: 0 },
        lenBlock: indefinite,
        value: [new asn1js.OctetString({ valueHex: new Uint8Array(encrypted) })],
      }),
    ],
  });
  const envelopedData = new asn1js.Sequence({
    lenBlock: indefinite,
    value: [new asn1js.Integer({ value: 2 }), new asn1js.Set({ value: [ktri] }), encryptedContentInfo],
  });
  const contentInfo = new asn1js.Sequence({
    lenBlock: indefinite,
    value: [
      new asn1js.ObjectIdentifier({ value: '1.2.840.113549.1.7.3' }),
      new asn1js.Constructed({
        idBlock: { tagClass: 3, tagNumber: 0 },
        lenBlock: indefinite,
        value: [envelopedData],
      }),
    ],
  });
  return Buffer.from(contentInfo.toBER(false));
}
