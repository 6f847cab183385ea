fn main() {
    println!("starttls conformance: under construction");
}
