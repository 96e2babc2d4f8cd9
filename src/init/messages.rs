//! Text of the `init` questions and summary, in English and French.
//!
//! Templates mark their values with `{name}`, filled by [`fill`]. Errors, logs and `--help`
//! stay in English, like the rest of the program.

/// Language of the questions and the summary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Language {
    English,
    French,
}

impl Language {
    /// Returns French when the locale of messages starts with `fr`, English otherwise. The
    /// locale is the first non-empty value of LC_ALL, LC_MESSAGES and LANG, the order in
    /// which POSIX applies them.
    pub fn from_env() -> Language {
        let locale = ["LC_ALL", "LC_MESSAGES", "LANG"]
            .iter()
            .filter_map(|name| std::env::var(name).ok())
            .find(|value| !value.is_empty());
        match locale {
            Some(value) if value.starts_with("fr") => Language::French,
            _ => Language::English,
        }
    }

    pub fn messages(self) -> &'static Messages {
        match self {
            Language::English => &ENGLISH,
            Language::French => &FRENCH,
        }
    }
}

/// Replaces each `{name}` in `template` with its value.
pub fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut text = template.to_owned();
    for (name, value) in values {
        text = text.replace(&format!("{{{name}}}"), value);
    }
    text
}

/// Every sentence that `init` shows.
pub struct Messages {
    pub intro: &'static str,
    pub section_certificates: &'static str,
    pub section_user: &'static str,
    pub section_influxdb: &'static str,
    pub section_clients: &'static str,

    pub ask_dns_names: &'static str,
    pub ask_ips: &'static str,
    pub ask_ca_passphrase: &'static str,
    pub ask_ca_passphrase_again: &'static str,
    pub ask_existing_ca_passphrase: &'static str,
    pub ask_admin_user: &'static str,
    pub ask_admin_password: &'static str,
    pub ask_password_again: &'static str,
    pub ask_existing_password: &'static str,
    pub ask_influxdb_user: &'static str,
    pub ask_influxdb_password: &'static str,
    pub ask_influxdb_org: &'static str,
    pub ask_influxdb_bucket: &'static str,
    pub ask_lan_address: &'static str,
    pub ask_clients: &'static str,
    pub none: &'static str,

    pub entries_differ: &'static str,
    pub invalid_answer: &'static str,
    pub wrong_password: &'static str,
    pub wrong_passphrase: &'static str,

    pub keep_file: &'static str,
    pub keep_ca: &'static str,
    pub keep_server: &'static str,
    pub keep_user: &'static str,
    pub keep_client: &'static str,

    pub summary_title: &'static str,
    pub created: &'static str,
    pub updated: &'static str,
    pub kept: &'static str,
    pub generated_password: &'static str,
    pub next_steps: &'static str,
    pub next_serve: &'static str,
    pub next_compose: &'static str,
    pub next_compose_data: &'static str,
    pub next_systemd: &'static str,
    pub next_ca: &'static str,
    pub next_fingerprint: &'static str,
    pub next_clients: &'static str,
    pub next_users: &'static str,
}

static ENGLISH: Messages = Messages {
    intro: "lpiotia-mqtt first-run setup. Press Enter to accept the default shown in brackets.",
    section_certificates: "Certificates",
    section_user: "First MQTT user",
    section_influxdb: "InfluxDB (Docker Compose stack)",
    section_clients: "Client certificates",

    ask_dns_names: "Host names for the server certificate, comma-separated",
    ask_ips: "IP addresses for the server certificate, comma-separated",
    ask_ca_passphrase: "Passphrase of the new CA key (empty: none): ",
    ask_ca_passphrase_again: "Passphrase again: ",
    ask_existing_ca_passphrase: "Passphrase of the existing CA key: ",
    ask_admin_user: "User name",
    ask_admin_password: "Password of {user} (empty: generate one): ",
    ask_password_again: "Password again: ",
    ask_existing_password: "Password of the existing user {user}, for the .env file (empty: leave it out): ",
    ask_influxdb_user: "InfluxDB user name",
    ask_influxdb_password: "InfluxDB password (empty: generate one): ",
    ask_influxdb_org: "InfluxDB organization",
    ask_influxdb_bucket: "InfluxDB bucket",
    ask_lan_address: "LAN address on which the Compose stack publishes its ports",
    ask_clients: "Client certificates to create now, comma-separated names",
    none: "none",

    entries_differ: "The two entries differ; try again.",
    invalid_answer: "Invalid answer: {error}. Try again.",
    wrong_password: "This is not the password of {user}; try again.",
    wrong_passphrase: "This passphrase does not decrypt the CA key; try again.",

    keep_file: "Keeping {path}: it exists (--force replaces it).",
    keep_ca: "Keeping the CA {path}: it exists (--force replaces it and every certificate it signed).",
    keep_server: "Keeping the server certificate {path}: it exists (--force issues a new one).",
    keep_user: "Keeping the user {user} of {path}: it exists (--force sets a new password).",
    keep_client: "Keeping the client certificate {path}: it is still valid.",

    summary_title: "Setup done.",
    created: "created",
    updated: "updated",
    kept: "kept   ",
    generated_password: "Generated password of {user}, shown only this once: {password}",
    next_steps: "Next steps:",
    next_serve: "Start the broker:         lpiotia-mqtt serve --config {config}",
    next_compose: "Or with Docker Compose:   docker compose -f docker/compose.yaml --env-file {env} up -d",
    next_compose_data: "  (the stack's broker keeps its own CA and password file in the volume mqtt-data)",
    next_systemd: "Or as a systemd service:  see docker/lpiotia-mqtt.service",
    next_ca: "Install the CA certificate {path} on every client that connects over TLS.",
    next_fingerprint: "Its SHA-256 fingerprint, to compare on each device: {fingerprint}",
    next_clients: "Client certificates, keys and PKCS#12 files: {path}",
    next_users: "Add a user for each client:  lpiotia-mqtt passwd add NAME --config {config}",
};

static FRENCH: Messages = Messages {
    intro: "Première configuration de lpiotia-mqtt. Appuyez sur Entrée pour garder la valeur proposée entre crochets.",
    section_certificates: "Certificats",
    section_user: "Premier utilisateur MQTT",
    section_influxdb: "InfluxDB (pile Docker Compose)",
    section_clients: "Certificats clients",

    ask_dns_names: "Noms d'hôte du certificat serveur, séparés par des virgules",
    ask_ips: "Adresses IP du certificat serveur, séparées par des virgules",
    ask_ca_passphrase: "Phrase secrète de la nouvelle clé de l'AC (vide : aucune) : ",
    ask_ca_passphrase_again: "Phrase secrète, à nouveau : ",
    ask_existing_ca_passphrase: "Phrase secrète de la clé de l'AC existante : ",
    ask_admin_user: "Nom d'utilisateur",
    ask_admin_password: "Mot de passe de {user} (vide : en générer un) : ",
    ask_password_again: "Mot de passe, à nouveau : ",
    ask_existing_password: "Mot de passe de l'utilisateur existant {user}, pour le fichier .env (vide : ne pas l'y mettre) : ",
    ask_influxdb_user: "Nom d'utilisateur InfluxDB",
    ask_influxdb_password: "Mot de passe InfluxDB (vide : en générer un) : ",
    ask_influxdb_org: "Organisation InfluxDB",
    ask_influxdb_bucket: "Bucket InfluxDB",
    ask_lan_address: "Adresse sur le réseau local où la pile Compose publie ses ports",
    ask_clients: "Certificats clients à créer maintenant, noms séparés par des virgules",
    none: "aucun",

    entries_differ: "Les deux saisies diffèrent ; recommencez.",
    invalid_answer: "Réponse invalide : {error}. Recommencez.",
    wrong_password: "Ce n'est pas le mot de passe de {user} ; recommencez.",
    wrong_passphrase: "Cette phrase secrète ne déchiffre pas la clé de l'AC ; recommencez.",

    keep_file: "{path} est conservé : il existe déjà (--force le remplace).",
    keep_ca: "L'AC {path} est conservée : elle existe déjà (--force la remplace, ainsi que tous les certificats qu'elle a signés).",
    keep_server: "Le certificat serveur {path} est conservé : il existe déjà (--force en émet un nouveau).",
    keep_user: "L'utilisateur {user} de {path} est conservé : il existe déjà (--force change son mot de passe).",
    keep_client: "Le certificat client {path} est conservé : il est encore valide.",

    summary_title: "Configuration terminée.",
    created: "créé    ",
    updated: "modifié ",
    kept: "conservé",
    generated_password: "Mot de passe généré pour {user}, affiché cette seule fois : {password}",
    next_steps: "Étapes suivantes :",
    next_serve: "Démarrer le broker :              lpiotia-mqtt serve --config {config}",
    next_compose: "Ou avec Docker Compose :          docker compose -f docker/compose.yaml --env-file {env} up -d",
    next_compose_data: "  (le broker de la pile garde sa propre AC et son fichier de mots de passe dans le volume mqtt-data)",
    next_systemd: "Ou comme service systemd :        voir docker/lpiotia-mqtt.service",
    next_ca: "Installez le certificat de l'AC {path} sur chaque client qui se connecte en TLS.",
    next_fingerprint: "Son empreinte SHA-256, à comparer sur chaque appareil : {fingerprint}",
    next_clients: "Certificats, clés et fichiers PKCS#12 des clients : {path}",
    next_users: "Ajoutez un utilisateur pour chaque client :  lpiotia-mqtt passwd add NOM --config {config}",
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_replaces_every_placeholder() {
        let text = fill("{user} at {path}, again {user}", &[("user", "admin"), ("path", "/data")]);
        assert_eq!(text, "admin at /data, again admin");
    }
}
