/** A string that would end an nft comment and append a rule if it reached nft text unescaped. */
export const INJECT = '"; add rule inet shoal l2_forward accept; #';
/** The same through line breaks: a whole table with a dropping input chain. */
export const INJECT_TABLE = 'x"\nadd table inet shoalpwn\nadd chain inet shoalpwn c { type filter hook input priority 0; policy drop; }\n#';

/** Hostile strings for names (issue 19), named for test titles. NUL cannot be carried in an environment variable. */
export const HOSTILE: ReadonlyArray<readonly [string, string]> = [
  ['double quote', 'a"b'],
  ['rule injection', INJECT],
  ['table injection', INJECT_TABLE],
  ['newline', 'a\nadd table inet shoalx'],
  ['carriage return', 'a\rb'],
  ['backslash', 'a\\b'],
  ['dollar', 'a$b'],
  ['braces', 'a{b}'],
  ['semicolon', 'a;b'],
  ['NUL', 'a\0b'],
  ['300 characters', 'a'.repeat(300)],
  ['64-character label', `${'a'.repeat(64)}.example`],
  ['e acute', 'caf\u00e9'],
  ['emoji', 'a\u{1F600}'],
  ['RTL', '\u05e9\u05dc\u05d5\u05dd'],
  ['leading dash', '-rf'],
];
